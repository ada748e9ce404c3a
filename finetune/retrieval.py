"""Sign-text retrieval head: the pose encoder and the mBART text encoder aligned by the pre-training contrastive loss.

F_sign = MLP(AvgPool_s(F_SE)) and F_text = MLP(F_TE) in d_e, compared by the fine-grained similarity m_ij (or the
coarse one) and trained with the symmetric InfoNCE of eq. 5 over the global batch, τ learnable from 0.07 (paper
§III-C, Table III): :class:`slp.models.alignment.SignTextAlignment`, the module pre-training uses. With ``--pretrained``
the projectors and τ start from the ones pre-training learnt and exported beside the encoder
(:meth:`RetrievalHead.load_pretrained`), so the head ranks pairs before its first step; an encoder exported without
them (older exports, pre-training without L_STC) leaves them fresh, τ at ``retrieval.temperature``. They then train
at the head's learning rate, as fresh ones do: only the encoder (and a trained text encoder) learns 10× slower.

The text encoder is frozen by default. It then is no part of the fine-tuned weights: :meth:`RetrievalHead.state_dict`
leaves it out (mbart-large-cc25 is 600M parameters that ``text_model`` already holds) and
:meth:`RetrievalHead.load_state_dict` keeps the weights it was loaded with. With ``train_text_encoder`` it learns
at the encoder's reduced learning rate and is saved like every other trained weight.

Evaluation ranks every text of a split against every clip (T2V) and every clip against every text (V2T); pair i
is the only ground truth of query i. Each clip's and text's embeddings are predicted batch by batch (on every
rank, a slice of the batches), and the whole ``N × N`` similarity is scored from them in fixed blocks, so it does not
depend on the number of processes. In V2T, other copies of the query's own sentence (same text and language)
are left out of its candidates: no model can tell identical strings apart, and the tie they score would count
against the ground truth (slp.metrics ranks ties pessimistically). In T2V the clips of a duplicated sentence stay
distinct candidates, as they are distinct videos.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from finetune.config import FinetuneConfig
from finetune.data import collate_sequences
from finetune.tasks import register_task
from slp.cli_errors import UserError
from slp.data.schema import Sample
from slp.metrics import retrieval_metrics
from slp.models.alignment import ALIGNMENT_WEIGHTS_NAME, AlignmentConfig, SignTextAlignment, same_text_model
from slp.models.sign_encoder import SignPoseEncoder
from slp.text import FrozenTextEncoder, MBartTextTokenizer

MAIN_METRIC = "mean_r1"  # (T2V R@1 + V2T R@1) / 2
HIGHER_IS_BETTER = True


def keep(sample: Sample) -> bool:
    return bool(sample.text and sample.text.strip())


@dataclass
class RetrievalCollator:
    """Samples → ``pose``, ``frame_mask`` of whole clips and the token ``input_ids`` ``[w1..wm, </s>, <lang>]``
    with their ``text_mask``."""

    tokenizer: MBartTextTokenizer
    max_frames: int

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        pose, frame_mask = collate_sequences(samples, self.max_frames)
        ids, mask = self.tokenizer([s.meta.text for s in samples], [s.meta.text_language for s in samples])
        return {"pose": pose, "frame_mask": frame_mask, "input_ids": ids, "text_mask": mask}


def _pad(sequences: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, L, d)`` of sequences ``(l_i, d)`` zero-padded to the longest, and the ``(N, L)`` mask of their rows."""
    lengths = torch.tensor([len(x) for x in sequences])
    return (nn.utils.rnn.pad_sequence(sequences, batch_first=True).to(device),
            (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).to(device))


class RetrievalHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, text: FrozenTextEncoder, alignment: AlignmentConfig, *,
                 train_text_encoder: bool = False, max_frames: int = 256, text_model: str = ""):
        super().__init__()
        self.encoder = encoder
        self.text_model = text_model  # where ``text`` was read from (a hub name or a local directory)
        self.text_tokenizer = text.text_tokenizer
        self.train_text_encoder = train_text_encoder
        if train_text_encoder:
            self.text_encoder = text.encoder.requires_grad_(True)  # the bare mBART encoder, trained
            self.pretrained_modules = (self.text_encoder,)  # at the encoder's learning rate (trainer)
        else:
            self.text_encoder = text  # no gradient, always in eval mode
            self.pretrained_modules = ()
        self.alignment = SignTextAlignment(encoder.output_dim, text.d_model, alignment)
        self.max_frames = max_frames

    @property
    def device(self) -> torch.device:
        return self.alignment.temperature.log_temperature.device

    def load_pretrained(self, name_or_path: str) -> list[str]:
        """Start the projectors and τ from the alignment module pre-training exported beside the encoder
        ``name_or_path`` (:meth:`SignTextAlignment.from_pretrained`); returns the names of what was loaded, none
        when the export has no such module.

        The rule: the saved module is used only as the module this config trains, never reshaped or reinterpreted.
        Its input widths must be this head's (the encoder's output, the text encoder's d_model) and its d_e, pooling
        window and similarity those of ``retrieval.*``; a config that says otherwise is refused with the settings
        that fit. ``retrieval.temperature`` is only where a fresh τ starts: the learnt τ replaces it. The text
        model is recorded by name (a local one copied into the export), which a moved folder changes, so a different
        text model is reported, not refused.
        """
        found = SignTextAlignment.from_pretrained(name_or_path)
        if found is None:
            return []
        saved, pretrained_text_model = found
        mine = self.alignment
        where = f"--pretrained {name_or_path}: its alignment module"
        if saved.sign_dim != mine.sign_dim:
            raise UserError(f"{where} projects {saved.sign_dim}-d sign features, the encoder gives {mine.sign_dim}")
        if saved.text_dim != mine.text_dim:
            raise UserError(f"{where} was trained on {saved.text_dim}-d features of {pretrained_text_model}, "
                            f"retrieval.text_model={self.text_model} gives {mine.text_dim}: set retrieval.text_model "
                            f"to the pre-training text encoder")
        differ = [k for k in ("embed_dim", "pool_window", "similarity")
                  if getattr(saved.cfg, k) != getattr(mine.cfg, k)]
        if differ:
            pretrained = " ".join(f"retrieval.{k}={getattr(saved.cfg, k)}" for k in differ)
            configured = " ".join(f"retrieval.{k}={getattr(mine.cfg, k)}" for k in differ)
            raise UserError(f"{where} has {pretrained}, the config {configured}: set {pretrained} to start from it "
                            f"(an encoder folder without {ALIGNMENT_WEIGHTS_NAME} starts the projectors fresh)")
        mine.load_state_dict(saved.state_dict())
        text_note = ("" if same_text_model(pretrained_text_model, self.text_model) else
                     f" (trained on features of {pretrained_text_model}, this run reads {self.text_model})")
        return ["alignment.sign_projector", "alignment.text_projector" + text_note,
                f"alignment.temperature (τ {mine.temperature().item():.4g})"]

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

    def collator(self, train: bool) -> RetrievalCollator:
        return RetrievalCollator(self.text_tokenizer, self.max_frames)  # the same pairs in training and evaluation

    def text_features(self, input_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """F_TE ``(B, m, D_text)`` of the tokens."""
        if self.train_text_encoder:
            return self.text_encoder(input_ids=input_ids, attention_mask=text_mask.long()).last_hidden_state
        return self.text_encoder(input_ids, text_mask)

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor, input_ids: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        """This rank's share of the symmetric InfoNCE of the global batch (negatives: every rank's pairs), scaled
        so that data-parallel gradient averaging gives the global batch's gradient."""
        loss, _ = self.alignment(self.encoder(pose, frame_mask), frame_mask, self.text_features(input_ids, text_mask),
                                 text_mask)
        return loss

    @torch.no_grad()
    def predict(self, pose: torch.Tensor, frame_mask: torch.Tensor, input_ids: torch.Tensor,
                text_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each pair's F_sign ``(n, d_e)`` over its valid clips and F_text ``(m, d_e)`` over its valid tokens."""
        sign, sign_mask = self.alignment.sign_embeddings(self.encoder(pose, frame_mask), frame_mask)
        text = self.alignment.text_embeddings(self.text_features(input_ids, text_mask))
        # One copy to the host, then per-sample rows there (indexing on the device would sync once per sample).
        sign, sign_mask, text, text_mask = (x.cpu() for x in (sign.float(), sign_mask, text.float(), text_mask))
        return [(s[sm], t[tm]) for s, sm, t, tm in zip(sign, sign_mask, text, text_mask)]

    @torch.no_grad()
    def similarity_matrix(self, outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``(N, N)`` scores of clip i and text j from the predicted embeddings, ``chunk_size`` texts at a time
        (against ``chunk_size`` clips at a time): one ``chunk² × n × m`` block exists at once."""
        sign, sign_mask = _pad([s for s, _ in outputs], self.device)
        text, text_mask = _pad([t for _, t in outputs], self.device)
        block = self.alignment.cfg.chunk_size
        return torch.cat([self.alignment.similarity(sign, sign_mask, text[j : j + block], text_mask[j : j + block],
                                                    block).float().cpu()
                          for j in range(0, len(outputs), block)], dim=1)

    def metrics(self, outputs: list[tuple[torch.Tensor, torch.Tensor]], samples: list[Sample]) -> dict[str, float]:
        similarity = self.similarity_matrix(outputs)
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
        a = self.alignment.cfg
        return {"embed_dim": a.embed_dim, "pool_window": a.pool_window, "similarity": a.similarity,
                "train_text_encoder": self.train_text_encoder, "max_text_tokens": self.text_tokenizer.max_length}


@register_task("retrieval")
def build_head(cfg: FinetuneConfig, encoder: SignPoseEncoder, train: list[Sample], state: dict | None) -> RetrievalHead:
    """The head of ``cfg.retrieval``; a checkpoint's ``state`` wins over the config. The text encoder is read from
    ``retrieval.text_model`` either way (a hub name or a local directory, which may move between machines)."""
    r = cfg.retrieval
    shape = {"embed_dim": r.embed_dim, "pool_window": r.pool_window, "similarity": r.similarity,
             "train_text_encoder": r.train_text_encoder, "max_text_tokens": r.max_text_tokens, **(state or {})}
    text = FrozenTextEncoder.from_pretrained(r.text_model, shape["max_text_tokens"])
    alignment = AlignmentConfig(embed_dim=shape["embed_dim"], pool_window=shape["pool_window"],
                                similarity=shape["similarity"], temperature_init=r.temperature,
                                chunk_size=r.chunk_size)
    return RetrievalHead(encoder, text, alignment, train_text_encoder=shape["train_text_encoder"],
                         max_frames=cfg.data.max_frames, text_model=r.text_model)


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
