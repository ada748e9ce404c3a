"""Sign-text retrieval head: the pose encoder and the mBART text encoder aligned by the pre-training contrastive loss.

F_sign = MLP(AvgPool_s(F_SE)) and F_text = MLP(F_TE) in d_e, compared by the fine-grained similarity m_ij (or the
coarse one) and trained with the symmetric InfoNCE of eq. 5, τ learnable from 0.07 (paper §III-C, Table III).
The projectors and τ start fresh: the pre-training export holds the encoder only.

The text encoder is frozen by default. It then is no part of the fine-tuned weights: :meth:`RetrievalHead.state_dict`
leaves it out (mbart-large-cc25 is 600M parameters that ``text_model`` already holds) and
:meth:`RetrievalHead.load_state_dict` keeps the weights it was loaded with. With ``train_text_encoder`` it learns
at the encoder's reduced learning rate and is saved like every other trained weight.

Evaluation ranks every text of a split against every clip (T2V) and every clip against every text (V2T); pair i
is the only ground truth of query i. In V2T, other copies of the query's own sentence (same text and language)
are left out of its candidates: no model can tell identical strings apart, and the tie they score would count
against the ground truth (slp.metrics ranks ties pessimistically). In T2V the clips of a duplicated sentence stay
distinct candidates, as they are distinct videos.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from finetune.config import FinetuneConfig
from finetune.data import collate_sequences
from slp.data.schema import Sample
from slp.losses.contrastive import SymmetricInfoNCE, coarse_similarity, fine_grained_similarity, gather_features
from slp.metrics import retrieval_metrics
from slp.models.pretraining import ProjectionMLP, average_pool_clips
from slp.models.sign_encoder import SignPoseEncoder
from slp.text import FrozenTextEncoder

MAIN_METRIC = "mean_r1"  # (T2V R@1 + V2T R@1) / 2
HIGHER_IS_BETTER = True
SIMILARITIES = ("fine", "coarse")


def keep(sample: Sample) -> bool:
    return bool(sample.text and sample.text.strip())


class RetrievalHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, text: FrozenTextEncoder, *, embed_dim: int = 512,
                 pool_window: int = 4, temperature: float = 0.07, similarity: str = "fine",
                 train_text_encoder: bool = False, max_frames: int = 256, chunk_size: int = 32):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"retrieval.similarity {similarity!r} is not one of {SIMILARITIES}")
        self.encoder = encoder
        self.text_tokenizer = text.text_tokenizer
        self.train_text_encoder = train_text_encoder
        if train_text_encoder:
            self.text_encoder = text.encoder.requires_grad_(True)  # the bare mBART encoder, trained
            self.pretrained_modules = (self.text_encoder,)  # at the encoder's learning rate (trainer)
        else:
            self.text_encoder = text  # no gradient, always in eval mode
            self.pretrained_modules = ()
        self.sign_projector = ProjectionMLP(encoder.output_dim, embed_dim)
        self.text_projector = ProjectionMLP(text.d_model, embed_dim)
        self.contrastive = SymmetricInfoNCE(temperature)
        self.embed_dim, self.pool_window, self.similarity_kind = embed_dim, pool_window, similarity
        self.max_frames, self.chunk_size = max_frames, chunk_size

    @property
    def device(self) -> torch.device:
        return self.contrastive.log_temperature.device

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        state = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        if not self.train_text_encoder:
            frozen = prefix + "text_encoder."
            for key in [k for k in state if k.startswith(frozen)]:
                del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if not self.train_text_encoder:  # checkpoints lack the frozen weights: keep the ones loaded from text_model
            own = {f"text_encoder.{k}": v for k, v in self.text_encoder.state_dict().items()}
            state_dict = {**own, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def sign_embeddings(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """F_sign ``(B, n, d_e)`` of whole clips and its clip mask ``(B, n)``."""
        pose, frame_mask = collate_sequences(samples, self.max_frames)
        frame_mask = frame_mask.to(self.device)
        clips, clip_mask = average_pool_clips(self.encoder(pose.to(self.device), frame_mask), frame_mask,
                                              self.pool_window)
        return self.sign_projector(clips), clip_mask

    def text_embeddings(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """F_text ``(B, m, d_e)`` of ``[w1..wm, </s>, <lang>]`` and its token mask ``(B, m)``."""
        ids, mask = self.text_tokenizer([s.meta.text for s in samples], [s.meta.text_language for s in samples])
        ids, mask = ids.to(self.device), mask.to(self.device)
        if self.train_text_encoder:
            features = self.text_encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        else:
            features = self.text_encoder(ids, mask)
        return self.text_projector(features), mask

    def similarity(self, sign, sign_mask, text, text_mask, chunk_size: int | None = None) -> torch.Tensor:
        if self.similarity_kind == "coarse":
            return coarse_similarity(sign, sign_mask, text, text_mask)
        return fine_grained_similarity(sign, sign_mask, text, text_mask, chunk_size)

    def forward(self, samples: list[Sample], rng: np.random.Generator) -> torch.Tensor:
        """Symmetric InfoNCE of a batch; negatives are the other pairs of the global batch (all ranks)."""
        embeddings = gather_features(*self.sign_embeddings(samples), *self.text_embeddings(samples))
        return self.contrastive(self.similarity(*embeddings, self.chunk_size))

    @torch.no_grad()
    def similarity_matrix(self, samples: list[Sample], batch_size: int) -> torch.Tensor:
        """``(N, N)`` scores of clip i and text j, built block by block: one ``batch² × n × m`` tensor at a time."""
        blocks = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
        signs = [self.sign_embeddings(b) for b in blocks]
        texts = [self.text_embeddings(b) for b in blocks]
        return torch.cat([torch.cat([self.similarity(*s, *t).float().cpu() for t in texts], dim=1) for s in signs])

    @torch.no_grad()
    def evaluate(self, samples: list[Sample], batch_size: int) -> dict[str, float]:
        similarity = self.similarity_matrix(samples, batch_size)
        sentence_ids: dict[tuple[str, str], int] = {}
        sentence = torch.tensor([sentence_ids.setdefault((s.meta.text, s.meta.text_language), len(sentence_ids))
                                 for s in samples])
        copies = (sentence[:, None] == sentence[None, :]) & ~torch.eye(len(samples), dtype=torch.bool)
        t2v = retrieval_metrics(similarity)
        v2t = retrieval_metrics(similarity.masked_fill(copies, float("-inf")))
        metrics = {k: v for k, v in t2v.items() if k.startswith("t2v")}
        metrics |= {k: v for k, v in v2t.items() if k.startswith("v2t")}
        metrics[MAIN_METRIC] = (metrics["t2v_r1"] + metrics["v2t_r1"]) / 2
        return metrics

    def head_state(self) -> dict:
        """What shapes the head besides its weights (a later ``--eval-only`` rebuilds it from this)."""
        return {"embed_dim": self.embed_dim, "pool_window": self.pool_window, "similarity": self.similarity_kind,
                "train_text_encoder": self.train_text_encoder, "max_text_tokens": self.text_tokenizer.max_length}


def build_head(cfg: FinetuneConfig, encoder: SignPoseEncoder, train: list[Sample], state: dict | None) -> RetrievalHead:
    """The head of ``cfg.retrieval``; a checkpoint's ``state`` wins over the config. The text encoder is read from
    ``retrieval.text_model`` either way (a hub name or a local directory, which may move between machines)."""
    r = cfg.retrieval
    shape = {"embed_dim": r.embed_dim, "pool_window": r.pool_window, "similarity": r.similarity,
             "train_text_encoder": r.train_text_encoder, "max_text_tokens": r.max_text_tokens, **(state or {})}
    text = FrozenTextEncoder.from_pretrained(r.text_model, shape.pop("max_text_tokens"))
    return RetrievalHead(encoder, text, temperature=r.temperature, max_frames=cfg.data.max_frames,
                         chunk_size=r.chunk_size, **shape)


def results_table(dev: dict, test: dict) -> str:
    """The layout of the paper's retrieval tables: T2V then V2T, R@1 / R@5 / R@10 (%) and median rank."""
    keys, names = ("r1", "r5", "r10", "medr"), ("R@1", "R@5", "R@10", "MedR")
    width = 7 * len(keys) - 1
    lines = [f"{'':<6} {'T2V':^{width}} | {'V2T':^{width}}",
             f"{'split':<6} " + " | ".join(" ".join(f"{n:>6}" for n in names) for _ in range(2))]
    for split, m in (("dev", dev), ("test", test)):
        lines.append(f"{split:<6} " + " | ".join(" ".join(f"{m[f'{d}_{k}']:>6.1f}" for k in keys)
                                                  for d in ("t2v", "v2t")))
    return "\n".join(line.rstrip() for line in lines)
