"""CTC decoding: greedy, and prefix beam search through flashlight-text (a maintained CPU decoder).

flashlight-text's lexicon-free decoder with a zero language model is CTC prefix beam search: it merges paths
that collapse to the same label prefix (log-add of their scores). torchaudio, which wraps the same decoder,
does not import beside a CPU torch build here; pyctcdecode pins numpy < 2.
"""

from __future__ import annotations

import itertools

import torch
from flashlight.lib.text.decoder import (
    CriterionType,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    ZeroLM,
)


def collapse(path: list[int], blank: int) -> list[int]:
    """Merge repeated labels, then remove blanks."""
    return [k for k, _ in itertools.groupby(path) if k != blank]


def ctc_greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    best = log_probs.argmax(dim=-1)
    return [collapse(row[:n], blank) for row, n in zip(best.tolist(), lengths.tolist())]


class CTCBeamDecoder:
    """CTC prefix beam search over ``(B, T, V)`` log-probabilities; returns label sequences."""

    def __init__(self, num_tokens: int, blank: int = 0, beam_size: int = 10, beam_threshold: float = 50.0):
        self.num_tokens, self.blank = num_tokens, blank
        options = LexiconFreeDecoderOptions(
            beam_size=beam_size, beam_size_token=num_tokens, beam_threshold=beam_threshold, lm_weight=0.0,
            sil_score=0.0, log_add=True, criterion_type=CriterionType.CTC,
        )
        # No silence token in gloss vocabularies: the blank doubles as the "silence" index, which CTC ignores.
        self.decoder = LexiconFreeDecoder(options, ZeroLM(), blank, blank, [])

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        if log_probs.shape[-1] != self.num_tokens:
            raise ValueError(f"{log_probs.shape[-1]} classes, decoder built for {self.num_tokens}")
        emissions = log_probs.detach().float().cpu().contiguous()
        b, t, v = emissions.shape
        out = []
        for i, steps in enumerate(lengths.tolist()):  # one copy from the device, not one sync per clip
            if steps == 0:
                out.append([])
                continue
            pointer = emissions.data_ptr() + i * t * v * emissions.element_size()
            best = self.decoder.decode(pointer, steps, v)[0]
            out.append(collapse(list(best.tokens), self.blank))
        return out
