"""Continuous sign recognition head: SignPoseEncoder + temporal convolutions + BiLSTM + CTC (paper §III-C).

The paper plugs its encoder into the "Encoder + TCN + BiLSTM" pipeline of VAC / SMKD / CorrNet: a K5-P2-K5-P2
temporal stack (1-D conv k=5 without padding, BatchNorm, ReLU, max-pool 2, twice: 4× fewer steps), a 2-layer
BiLSTM and a linear layer over the training gloss vocabulary plus the CTC blank (id 0), trained with CTC and
decoded by CTC prefix beam search (``cslr.beam_size``; 1 = greedy). Whole clips are used (``data.max_frames``,
evenly subsampled beyond). Metrics: WER with substitution / deletion / insertion rates after the benchmark's gloss
clean-up (``cslr.wer_cleanup``), the paper's Table VIII.

Padding is exact: the encoder masks padded frames, the unpadded convolutions and floor-mode pools make every
valid output step depend on valid frames only, and the BiLSTM runs on packed sequences, so (in evaluation) a
clip's log-probabilities do not depend on what it is batched with. In training BatchNorm's batch statistics do
see the padded steps, as in the reference implementations.

Glosses of dev / test absent from the training vocabulary can never be predicted: references are scored as the
annotated gloss strings, so those glosses count as errors, and ``oov`` reports their share of the reference words
(the part of the WER no model with this vocabulary can remove). Scoring strings rather than ids also lets the
clean-up merge variants the way the official scripts do (``loc-REGEN`` scores as ``REGEN``).

From a pre-training export the head takes the encoder only: the temporal convolutions, BiLSTM and gloss classifier
have no counterpart in pre-training, whose other modules are the pose decoder (coordinates of masked joints) and
the sign-text alignment (sentence-level similarity to mBART states, with no gloss vocabulary and no frame-level
output the CTC layer could start from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from finetune.config import FinetuneConfig
from finetune.data import collate_sequences
from finetune.tasks import register_task
from slp.data.schema import Sample
from slp.metrics.ctc import CTCBeamDecoder, ctc_greedy_decode
from slp.metrics.wer import CLEANUPS, wer
from slp.models.sign_encoder import SignPoseEncoder

MAIN_METRIC = "wer"
HIGHER_IS_BETTER = False

BLANK = 0
# VAC's notation: "K5" a 1-D convolution of kernel 5 (no padding), "P2" a max-pool of 2 (floor mode).
TEMPORAL_LAYERS = ("K5", "P2", "K5", "P2")
NUM_EXAMPLES = 3  # decoded sentences kept in the results, for reading


def keep(sample: Sample) -> bool:
    gloss = sample.meta.gloss
    return isinstance(gloss, list) and len(gloss) > 0


def temporal_output_lengths(lengths: torch.Tensor, layers: Sequence[str] = TEMPORAL_LAYERS) -> torch.Tensor:
    """Valid steps after the temporal stack of clips of ``lengths`` valid frames (0 when a clip is too short)."""
    for layer in layers:
        size = int(layer[1:])
        lengths = lengths - (size - 1) if layer[0] == "K" else torch.div(lengths, size, rounding_mode="floor")
    return lengths.clamp(min=0)


def temporal_min_frames(layers: Sequence[str] = TEMPORAL_LAYERS) -> int:
    """The fewest input frames that leave one output step (16 for K5-P2-K5-P2)."""
    frames = 1
    for layer in reversed(layers):
        size = int(layer[1:])
        frames = frames + size - 1 if layer[0] == "K" else frames * size
    return frames


def temporal_conv(in_dim: int, hidden: int, layers: Sequence[str] = TEMPORAL_LAYERS) -> nn.Sequential:
    modules: list[nn.Module] = []
    for layer in layers:
        size = int(layer[1:])
        if layer[0] == "K":
            modules += [nn.Conv1d(in_dim, hidden, size), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            in_dim = hidden
        else:
            modules.append(nn.MaxPool1d(size))
    return nn.Sequential(*modules)


def ctc_min_steps(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """The fewest output steps CTC needs per label sequence (rows of ``targets`` ``(B, S)``, the first
    ``target_lengths`` valid): one per label plus a blank between repeated labels."""
    inside = torch.arange(1, targets.shape[1], device=targets.device)[None, :] < target_lengths[:, None]
    repeats = ((targets[:, 1:] == targets[:, :-1]) & inside).sum(dim=1)
    return target_lengths + repeats


class GlossVocabulary:
    """Class ids of the glosses: 0 is the CTC blank, 1..N the training glosses in sorted order.

    A gloss outside the vocabulary encodes to ``unk_id`` = N + 1, an id beyond the classifier's outputs, so the
    model never predicts it.
    """

    def __init__(self, glosses: Sequence[str]):
        self.glosses = list(glosses)
        self.index = {g: i + 1 for i, g in enumerate(self.glosses)}
        if len(self.index) != len(self.glosses):
            raise ValueError("gloss vocabulary has duplicates")

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> GlossVocabulary:
        return cls(sorted({g for s in samples for g in s.meta.gloss}))

    @property
    def num_classes(self) -> int:
        return len(self.glosses) + 1  # + blank

    @property
    def unk_id(self) -> int:
        return self.num_classes

    def encode(self, glosses: Sequence[str]) -> list[int]:
        return [self.index.get(g, self.unk_id) for g in glosses]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.glosses[i - 1] for i in ids]


@dataclass
class CSLRCollator:
    """Samples → ``pose``, ``frame_mask`` of whole clips, and in training the gloss ids ``targets`` ``(B, S)``
    (blank-padded) with their ``target_lengths``."""

    vocabulary: GlossVocabulary
    max_frames: int
    train: bool

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        pose, frame_mask = collate_sequences(samples, self.max_frames)
        if not self.train:
            return {"pose": pose, "frame_mask": frame_mask}
        ids = [self.vocabulary.encode(s.meta.gloss) for s in samples]
        targets = torch.full((len(ids), max(len(i) for i in ids)), BLANK)
        for row, i in zip(targets, ids):
            row[: len(i)] = torch.tensor(i)
        return {"pose": pose, "frame_mask": frame_mask, "targets": targets,
                "target_lengths": torch.tensor([len(i) for i in ids])}


class CSLRHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, vocabulary: GlossVocabulary, hidden: int = 512,
                 lstm_layers: int = 2, dropout: float = 0.1, max_frames: int = 256, beam_size: int = 10,
                 wer_cleanup: str = "none"):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"cslr.hidden={hidden} must be even (the BiLSTM's two directions share it)")
        if beam_size < 1:
            raise ValueError(f"cslr.beam_size={beam_size} must be at least 1")
        if wer_cleanup != "none" and wer_cleanup not in CLEANUPS:
            raise ValueError(f"cslr.wer_cleanup={wer_cleanup!r}: expected 'none' or one of {sorted(CLEANUPS)}")
        if max_frames > encoder.config.max_frames:
            raise ValueError(f"data.max_frames={max_frames} exceeds the encoder's max_frames "
                             f"{encoder.config.max_frames}")
        self.encoder = encoder
        self.temporal = temporal_conv(encoder.output_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden // 2, lstm_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if lstm_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, vocabulary.num_classes)
        self.vocabulary = vocabulary
        self.max_frames = max_frames
        self.beam_size = beam_size
        self.wer_cleanup = None if wer_cleanup == "none" else wer_cleanup

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def log_probs(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T', classes)`` float32 log-probabilities and the ``(B,)`` valid output steps of each clip."""
        frame_mask = frame_mask.to(self.device)
        features = self.encoder(pose.to(self.device), frame_mask)  # (B, T, D), 0 at padded frames
        lengths = temporal_output_lengths(frame_mask.sum(dim=1))
        short = temporal_min_frames() - features.shape[1]
        if short > 0:  # a batch of clips all too short for the stack: pad so it runs; their lengths stay 0
            features = F.pad(features, (0, 0, 0, short))
        steps = self.temporal(features.transpose(1, 2)).transpose(1, 2)
        # Packing needs lengths ≥ 1; a 0-length clip's single step is never read (decoding and CTC use lengths).
        packed = pack_padded_sequence(steps, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=steps.shape[1])
        return self.classifier(self.dropout(hidden)).float().log_softmax(dim=-1), lengths

    def ctc_loss(self, log_probs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                 target_lengths: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of each clip's CTC loss divided by its label length (PyTorch's "mean").

        A clip whose output steps cannot hold its labels (``lengths`` < labels + repeats: CTC has no path) is
        left out of the loss and of the mean: ``zero_infinity`` turns its infinite loss and its gradient into 0,
        and the mean is taken over the feasible clips (a batch with none gives a loss of 0, still differentiable).
        """
        target_lengths = target_lengths.to(log_probs.device)
        feasible = lengths.to(log_probs.device) >= ctc_min_steps(targets.to(log_probs.device), target_lengths)
        losses = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths.to(log_probs.device), target_lengths,
                            blank=BLANK, reduction="none", zero_infinity=True)
        return (losses * feasible / target_lengths).sum() / feasible.sum().clamp(min=1)

    def collator(self, train: bool) -> CSLRCollator:
        return CSLRCollator(self.vocabulary, self.max_frames, train)

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch."""
        log_probs, lengths = self.log_probs(pose, frame_mask)
        return self.ctc_loss(log_probs, lengths, targets, target_lengths)

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        if self.beam_size == 1:
            ids = ctc_greedy_decode(log_probs, lengths, BLANK)
        else:
            ids = CTCBeamDecoder(self.vocabulary.num_classes, BLANK, self.beam_size).decode(log_probs, lengths)
        return [self.vocabulary.decode(i) for i in ids]

    @torch.no_grad()
    def predict(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> list[list[str]]:
        """Each clip's decoded gloss sequence."""
        return self.decode(*self.log_probs(pose, frame_mask))

    def metrics(self, outputs: list[list[str]], samples: list[Sample]) -> dict:
        references = [list(s.meta.gloss) for s in samples]
        scores = wer(references, outputs, cleanup=self.wer_cleanup)
        unknown = sum(i == self.vocabulary.unk_id for ref in references for i in self.vocabulary.encode(ref))
        words = sum(len(ref) for ref in references)
        return {"wer": scores["wer"], "sub": scores["sub"], "del": scores["del"], "ins": scores["ins"],
                "oov": 100.0 * unknown / max(words, 1),
                "examples": [{"reference": " ".join(r), "hypothesis": " ".join(h)}
                             for r, h in zip(references[:NUM_EXAMPLES], outputs)]}

    def head_state(self) -> dict:
        return {"glosses": self.vocabulary.glosses}


@register_task("cslr")
def build_head(cfg: FinetuneConfig, encoder: SignPoseEncoder, train: list[Sample], state: dict | None) -> CSLRHead:
    if state is not None:
        vocabulary = GlossVocabulary(state["glosses"])
    elif train:
        vocabulary = GlossVocabulary.from_samples(train)
    else:
        raise ValueError("cslr: the gloss vocabulary comes from the training split or from the head.json beside "
                         "the checkpoint; neither is there")
    c = cfg.cslr
    return CSLRHead(encoder, vocabulary, c.hidden, c.lstm_layers, c.dropout, cfg.data.max_frames, c.beam_size,
                    c.wer_cleanup)


def results_table(dev: dict, test: dict) -> str:
    """The layout of the paper's CSLR table (Table VIII): del/ins and WER on dev and test."""
    cells = [f"{m['del']:.1f}/{m['ins']:.1f}" for m in (dev, test)]
    return "\n".join([f"{'Dev':^18} {'Test':^18}",
                      f"{'del/ins':>11} {'WER':>6} {'del/ins':>11} {'WER':>6}",
                      f"{cells[0]:>11} {dev['wer']:>6.1f} {cells[1]:>11} {test['wer']:>6.1f}"])
