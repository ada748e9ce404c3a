"""Isolated sign recognition head: SignPoseEncoder + one linear layer over the mean of valid frames.

32 frames per clip, one per equal segment (random inside it in training, its middle in evaluation:
:func:`finetune.data.sample_frames`), cross-entropy with label smoothing 0.2; metrics are per-instance and per-class
top-1 / top-5 (paper Table III and Tables IV-VII).

Options (``islr.nla.*``, ``islr.stepnet.*``, ``islr.heatmap.*``; all off by default):

- NLA-SLR (:mod:`slp.losses.nla`): language-aware label smoothing, inter-modality mixup with an auxiliary
  classifier, its integration into the classifier, intra-modality mixup. Gloss embeddings of the classes (glosses
  from the training split's ``meta.gloss``) come from the frozen text encoder or a word-vector file; they are kept
  in the checkpoint and the class → gloss mapping in ``head.json``, so ``--eval-only`` never loads the text model.
- StepNet (:mod:`slp.models.stepnet`) between the encoder and the classifier: the classifier reads StepNet's fused
  feature (the prediction, as in the paper) and every partial prediction adds its loss with the same targets;
  ``islr.stepnet.spatial`` / ``temporal`` switch its branches (StepNet's Table 7a).
- NLA-SLR's keypoint stream (:mod:`slp.models.heatmap`) in place of the pose encoder: the collator gives the poses in
  frame space (hands too, not in their own boxes), rendered as heatmaps on the model's device and read by a
  separable 3-D CNN, VKNet's two laterally connected networks by default; the NLA-SLR options read its feature
  (intra-modality mixup blends the heatmaps). The trainer's pose encoder is not used (``--pretrained`` is refused,
  :func:`uses_pose_encoder`): the head keeps an empty module in its place, so the trainer's group of pre-trained
  parameters is empty and the backbone, trained from scratch, learns at the head's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate import PartialState
from torch import nn

from finetune.config import FinetuneConfig, NLAConfig
from finetune.data import collate_poses, sample_frames
from finetune.tasks import register_task
from slp.data.schema import Sample
from slp.losses.nla import (
    integrate_classifier,
    integration_momentum,
    inter_modality_mixup_loss,
    language_aware_targets,
    mix_poses,
    uniform_smoothing_targets,
)
from slp.metrics import islr_accuracy
from slp.models.heatmap import HeatmapBackbone, HeatmapConfig
from slp.models.sign_encoder import SignPoseEncoder
from slp.models.stepnet import StepNet, StepNetConfig, masked_mean
from slp.text.gloss_embeddings import text_encoder_embeddings, word_vector_embeddings
from slp.text.mbart import FrozenTextEncoder

MAIN_METRIC = "per_instance_top1"
HIGHER_IS_BETTER = True


def uses_pose_encoder(cfg: FinetuneConfig) -> bool:
    """The heatmap backbone replaces the pose encoder."""
    return not cfg.islr.heatmap.enabled


def keep(sample: Sample) -> bool:
    return sample.meta.label >= 0


def collate_frame_poses(samples: list[Sample], num_frames: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, 79, 3)`` poses in frame space and ``(B, T)`` frame mask of the frames :func:`collate_poses` samples:
    every point, hands included, at x / y in [-1, 1] of the frame (as normalisation maps the body), confidence
    kept, missing points at 0. Heatmaps are drawn in image space, where the hands' own boxes would lose where they
    are."""
    clips = [torch.from_numpy(s.pose[sample_frames(len(s.pose), num_frames, train).numpy()]) for s in samples]
    pose = torch.zeros(len(clips), max(len(c) for c in clips), 79, 3)
    for i, c in enumerate(clips):
        pose[i, : len(c)] = c
    frame_mask = torch.arange(pose.shape[1])[None, :] < torch.tensor([len(c) for c in clips])[:, None]
    seen = (pose[..., 2:] > 0).float()
    return torch.cat([(pose[..., :2] * 2 - 1) * seen, pose[..., 2:]], dim=-1), frame_mask


@dataclass
class ISLRCollator:
    """Samples → ``pose``, ``frame_mask`` (and ``labels`` in training) of ``num_frames`` sampled frames; the poses
    are normalised, or in frame space with ``frame_space`` (the heatmap backbone)."""

    num_frames: int
    train: bool
    frame_space: bool = False

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        collate = collate_frame_poses if self.frame_space else collate_poses
        pose, frame_mask = collate(samples, self.num_frames, self.train)
        if not self.train:
            return {"pose": pose, "frame_mask": frame_mask}
        return {"pose": pose, "frame_mask": frame_mask, "labels": torch.tensor([s.meta.label for s in samples])}


class ISLRHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, num_classes: int, num_frames: int = 32,
                 label_smoothing: float = 0.2, *, nla: NLAConfig | None = None, stepnet: StepNetConfig | None = None,
                 heatmap: HeatmapConfig | None = None, gloss_embeddings: torch.Tensor | None = None,
                 glosses: list[str] | None = None, total_steps: int = 0):
        """``heatmap`` replaces the encoder by the heatmap backbone. ``gloss_embeddings`` ``(num_classes, D)`` (zero
        rows for classes without a gloss) and ``glosses`` are needed by language-aware smoothing and inter-modality
        mixup; ``total_steps`` (the optimiser steps of the whole training; the trainer sets it once its loader is
        prepared) sets the classifier-integration schedule."""
        super().__init__()
        self.nla = nla or NLAConfig()
        if (self.nla.label_smoothing or self.nla.inter_mixup) and (gloss_embeddings is None or glosses is None):
            raise ValueError("islr.nla.label_smoothing / inter_mixup need the glosses and their embeddings")
        if self.nla.classifier_integration and not self.nla.inter_mixup:
            raise ValueError("islr.nla.classifier_integration integrates the inter-modality mixup classifier: "
                             "turn on islr.nla.inter_mixup")
        if heatmap is not None and stepnet is not None:
            raise ValueError("islr.stepnet reads the pose encoder's features: it cannot run on islr.heatmap")
        self.heatmap = HeatmapBackbone(heatmap, num_frames) if heatmap is not None else None
        self.encoder = encoder if heatmap is None else nn.Module()
        self.stepnet = StepNet(stepnet, encoder, num_classes) if stepnet is not None else None
        if self.heatmap is not None:
            feature_dim = self.heatmap.output_dim
        else:
            feature_dim = stepnet.width if stepnet is not None else encoder.output_dim
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.label_smoothing = label_smoothing
        self.glosses = glosses
        if gloss_embeddings is not None:
            self.register_buffer("gloss_embeddings", gloss_embeddings.float())
            self.register_buffer("has_gloss", torch.tensor([bool(g) for g in glosses]), persistent=False)
            self.register_buffer("gloss_classes", torch.nonzero(self.has_gloss).flatten(), persistent=False)
        if self.nla.inter_mixup:
            self.gloss_projection = nn.Linear(gloss_embeddings.shape[1], feature_dim)
            self.auxiliary_classifier = nn.Linear(feature_dim, num_classes)
        self.total_steps = total_steps
        self.steps_done = 0  # training iterations so far: m of the integration schedule

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def features(self, pose: torch.Tensor, frame_mask: torch.Tensor, mix: tuple[torch.Tensor, float] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The ``(B, D)`` feature the classifier reads and StepNet's partial logits (none for the linear head);
        ``mix`` = (partner, λ) of intra-modality mixup, applied to the backbone's input."""
        if self.heatmap is not None:
            return self.heatmap(pose, frame_mask, mix), {}
        if mix is not None:
            pose, frame_mask = mix_poses(pose, frame_mask, *mix)
        features = self.encoder(pose, frame_mask)
        if self.stepnet is None:
            return masked_mean(features, frame_mask), {}
        nodes = self.encoder.embedding.node_features(pose) if self.stepnet.spatial is not None else None
        out = self.stepnet(features, nodes, frame_mask)
        return out.feature, out.partial_logits

    def logits(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pose.to(self.device), frame_mask.to(self.device))[0])

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Smoothed ``(B, N)`` targets: language-aware or uniform, both with ε = ``label_smoothing``."""
        if self.nla.label_smoothing:
            return language_aware_targets(self.gloss_embeddings, labels, self.label_smoothing, self.nla.temperature,
                                          self.has_gloss)
        return uniform_smoothing_targets(labels, self.num_classes, self.label_smoothing)

    def collator(self, train: bool) -> ISLRCollator:
        return ISLRCollator(self.num_frames, train, frame_space=self.heatmap is not None)

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch; intra-modality mixup draws λ and the partners from torch's RNG."""
        targets = self.targets(labels)
        hard = F.one_hot(labels, self.num_classes).float()
        mix = None
        if self.nla.intra_mixup:
            alpha = torch.tensor(self.nla.intra_mixup_alpha)
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            partner = torch.randperm(len(labels)).to(self.device)
            mix = (partner, lam)
            targets = lam * targets + (1 - lam) * targets[partner]
            hard = lam * hard + (1 - lam) * hard[partner]
        if self.nla.classifier_integration:  # eq. 6: integrate, then this iteration's optimiser step
            momentum = integration_momentum(self.steps_done, self.total_steps, self.nla.integration_base)
            integrate_classifier(self.classifier, self.auxiliary_classifier, momentum)
        self.steps_done += 1
        feature, partial_logits = self.features(pose, frame_mask, mix)
        predictions = (self.classifier(feature), *partial_logits.values())
        loss = sum(F.cross_entropy(q.float(), targets) for q in predictions)
        if self.nla.inter_mixup:
            mapped = self.gloss_projection(self.gloss_embeddings[self.gloss_classes])
            gloss_logits = F.linear(mapped, self.auxiliary_classifier.weight)  # FC2 without its bias, see the loss
            loss = loss + self.nla.inter_mixup_weight * inter_modality_mixup_loss(
                self.auxiliary_classifier(feature), gloss_logits, hard, self.gloss_classes)
        return loss

    @torch.no_grad()
    def predict(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        """Each clip's class scores ``(num_classes,)``, in its own storage (a row view would carry the whole batch's
        scores into the gather)."""
        return [row.clone() for row in self.logits(pose, frame_mask).float().cpu()]

    def metrics(self, outputs: list[torch.Tensor], samples: list[Sample]) -> dict[str, float]:
        return islr_accuracy(torch.stack(outputs), [s.meta.label for s in samples])

    def head_state(self) -> dict:
        state = {"num_classes": self.num_classes}
        if self.glosses is not None:
            state.update(glosses=self.glosses, gloss_dim=int(self.gloss_embeddings.shape[1]))
        return state


def class_glosses(train: list[Sample], num_classes: int, lowercase: bool) -> tuple[list[str], list[str]]:
    """Gloss and text language of every class from its training samples ("" for a class without samples)."""
    glosses, languages = [""] * num_classes, [""] * num_classes
    for sample in train:
        label, gloss = sample.meta.label, sample.meta.gloss
        if not isinstance(gloss, str) or not gloss.strip():
            raise ValueError(f"islr.nla: sample {sample.key} (class {label}) has no gloss in meta.gloss; "
                             "language-aware smoothing and inter-modality mixup need the glosses")
        gloss = gloss.strip().lower() if lowercase else gloss.strip()
        if glosses[label] and glosses[label] != gloss:
            raise ValueError(f"islr.nla: class {label} has two glosses, {glosses[label]!r} and {gloss!r}")
        glosses[label], languages[label] = gloss, sample.meta.text_language
    return glosses, languages


def gloss_embeddings(nla: NLAConfig, glosses: list[str], languages: list[str]) -> torch.Tensor:
    """``(N, D)`` embeddings of the classes' glosses (zero rows for classes without one)."""
    known = [k for k, g in enumerate(glosses) if g]
    if len(known) < 2:
        raise ValueError(f"islr.nla: {len(known)} class(es) with a gloss; language-aware options need two or more")
    if nla.word_vectors:
        vectors = word_vector_embeddings([glosses[k] for k in known], nla.word_vectors)
    else:
        unknown_language = [glosses[k] for k in known if not languages[k]]
        if unknown_language:
            raise ValueError(f"islr.nla: glosses without a text language (meta.text_language) for the text "
                             f"encoder, e.g. {unknown_language[:5]}; set islr.nla.word_vectors instead")
        text_encoder = FrozenTextEncoder.from_pretrained(nla.text_model).to(PartialState().device)
        vectors = text_encoder_embeddings([glosses[k] for k in known], [languages[k] for k in known], text_encoder)
    table = torch.zeros(len(glosses), vectors.shape[1])
    table[known] = vectors
    return table


@register_task("islr")
def build_head(cfg: FinetuneConfig, encoder: SignPoseEncoder, train: list[Sample], state: dict | None) -> ISLRHead:
    if state is not None:
        num_classes = state["num_classes"]
    elif cfg.islr.num_classes:
        num_classes = cfg.islr.num_classes
    elif train:
        num_classes = 1 + max(s.meta.label for s in train)
    else:
        raise ValueError("islr: set islr.num_classes (no training split and no head.json beside the checkpoint)")
    nla = cfg.islr.nla
    glosses = embeddings = None
    if nla.label_smoothing or nla.inter_mixup:
        if state is not None:  # evaluation: the embeddings are in the checkpoint, no text model needed
            if "glosses" not in state:
                raise ValueError("islr.nla: head.json has no glosses (the checkpoint was trained without them)")
            glosses, embeddings = state["glosses"], torch.zeros(num_classes, state["gloss_dim"])
        elif train:
            glosses, languages = class_glosses(train, num_classes, nla.lowercase_glosses)
            embeddings = gloss_embeddings(nla, glosses, languages)
        else:
            raise ValueError("islr.nla: no training split and no head.json beside the checkpoint to take glosses from")
    stepnet = cfg.islr.stepnet if cfg.islr.stepnet.enabled else None
    heatmap = cfg.islr.heatmap if cfg.islr.heatmap.enabled else None
    return ISLRHead(encoder, num_classes, cfg.data.num_frames, cfg.islr.label_smoothing, nla=nla, stepnet=stepnet,
                    heatmap=heatmap, gloss_embeddings=embeddings, glosses=glosses)


def results_table(dev: dict, test: dict) -> str:
    """The layout of the paper's ISLR tables."""
    head = f"{'split':<6} {'P-I Top-1':>10} {'P-I Top-5':>10} {'P-C Top-1':>10} {'P-C Top-5':>10}"
    rows = [f"{name:<6} {m['per_instance_top1']:>10.2f} {m['per_instance_top5']:>10.2f} "
            f"{m['per_class_top1']:>10.2f} {m['per_class_top5']:>10.2f}" for name, m in (("dev", dev), ("test", test))]
    return "\n".join([head, *rows])
