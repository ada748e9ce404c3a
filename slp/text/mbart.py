"""Frozen multilingual mBART text encoder (SPEC §3): token features of ``[w1..wm, </s>, <lang>]``.

Researchers load ``facebook/mbart-large-cc25`` by name; tests and the demo load a tiny local stand-in made by
:func:`slp.text.tiny.build_tiny_mbart` through the same :meth:`FrozenTextEncoder.from_pretrained` path.
The encoder is frozen: its parameters never require gradients and it stays in eval mode whatever
``.train()`` is called with, so dropout never perturbs the text targets of the contrastive loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, MBartModel, PreTrainedTokenizerBase

from slp.data.schema import MBART_LANGUAGE_CODES
from slp.models.configuration import DEFAULT_TEXT_ENCODER

MAX_TEXT_TOKENS = 128


def mbart_language_code(language: str) -> str:
    """``en`` / ``de`` / ``zh`` (or an mBART code such as ``en_XX``) → the mBART language code."""
    if language in MBART_LANGUAGE_CODES:
        return MBART_LANGUAGE_CODES[language]
    if language in MBART_LANGUAGE_CODES.values():
        return language
    raise ValueError(
        f"unsupported text language {language!r}: expected one of {sorted(MBART_LANGUAGE_CODES)} "
        f"or {sorted(MBART_LANGUAGE_CODES.values())}"
    )


class MBartTextTokenizer:
    """Tokenises texts of mixed languages as ``[w1..wm, </s>, <lang>]`` (mBART's source format).

    mBART tokenizers take one ``src_lang`` per call; batches here mix languages, so the special tokens are
    appended per text. Texts longer than ``max_length`` keep their first ``max_length - 2`` pieces.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int = MAX_TEXT_TOKENS):
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.language_token_ids = {
            lang: int(tokenizer.convert_tokens_to_ids(code)) for lang, code in MBART_LANGUAGE_CODES.items()
        }
        self.cache_size = 100_000
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, max_length: int = MAX_TEXT_TOKENS) -> MBartTextTokenizer:
        return cls(AutoTokenizer.from_pretrained(str(name_or_path)), max_length)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def language_token_id(self, language: str) -> int:
        code = mbart_language_code(language)
        return int(self.tokenizer.convert_tokens_to_ids(code))

    def __call__(self, texts: Sequence[str], languages: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(B, m)`` and attention mask ``(B, m)`` (bool, True = token), right-padded."""
        if len(texts) != len(languages):
            raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
        rows = [self._row(text, lang) for text, lang in zip(texts, languages, strict=True)]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        width = int(lengths.max(initial=0))
        mask = np.arange(width)[None, :] < lengths[:, None]
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        if rows:
            input_ids[mask] = np.concatenate(rows)
        return torch.from_numpy(input_ids), torch.from_numpy(mask)

    def _row(self, text: str, language: str) -> np.ndarray:
        """``[w1..wm, </s>, <lang>]`` of one text, cached: corpora repeat texts (every ISLR template sentence,
        every unpaired sample's empty text), and tokenising is the costliest step of preparing a batch."""
        cache_key = (text, language)
        row = self._cache.get(cache_key)
        if row is None:
            pieces = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_length - 2]
            row = np.array([*pieces, self.eos_token_id, self.language_token_id(language)], dtype=np.int64)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()  # bounded memory; the frequent texts come back at once
            self._cache[cache_key] = row
        return row

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, without padding, ``</s>`` or language codes."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()


class FrozenTextEncoder(nn.Module):
    """The encoder half of mBART, frozen, returning token features and their mask."""

    def __init__(self, encoder: nn.Module, tokenizer: MBartTextTokenizer):
        super().__init__()
        self.encoder = encoder
        self.text_tokenizer = tokenizer
        self.encoder.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = DEFAULT_TEXT_ENCODER, max_length: int = MAX_TEXT_TOKENS
    ) -> FrozenTextEncoder:
        """Load from the Hugging Face hub name (``facebook/mbart-large-cc25``) or a local directory."""
        tokenizer = MBartTextTokenizer.from_pretrained(name_or_path, max_length)
        encoder = MBartModel.from_pretrained(str(name_or_path)).get_encoder()
        return cls(encoder, tokenizer)

    @property
    def d_model(self) -> int:
        return int(self.encoder.config.d_model)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.text_tokenizer.tokenizer

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        # Frozen: ignore the request so a parent module's .train() never enables dropout here.
        return super().train(False)

    def tokenize(self, texts: Sequence[str], languages: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text_tokenizer(texts, languages)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token features ``(B, m, d_model)`` for token ids and a bool/int attention mask."""
        device = next(self.encoder.parameters()).device
        out = self.encoder(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device).long())
        return out.last_hidden_state

    def encode(self, texts: Sequence[str], languages: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, m, d_model)`` and mask ``(B, m)`` (bool, True = token) of raw texts."""
        input_ids, mask = self.tokenize(texts, languages)
        return self(input_ids, mask), mask.to(next(self.encoder.parameters()).device)
