"""A tiny local stand-in for ``facebook/mbart-large-cc25``, for tests and the CPU demo.

Model hubs are out of reach on CI machines, so the tests build a small mBART with a sentencepiece model
trained on the given texts, save both with ``save_pretrained`` into a directory, and load that directory
through the same :meth:`slp.text.mbart.FrozenTextEncoder.from_pretrained` path users take with the real
model. The tokenizer has mBART's layout: sentencepiece ids shifted by one behind ``<s> <pad> </s> <unk>``,
then the 25 language codes and ``<mask>``.

Two kinds of sentencepiece model (``model_type``):

- ``unigram`` (the default): 512 pieces learnt from the texts. A corpus of many rare words (WLASL's 2,000 glosses,
  each in one sentence) leaves most of them spelt letter by letter, which the real mBART's 250k pieces would not;
- ``word``: one piece per whitespace-separated word of the texts, so every word of the corpus is a single token (a
  stand-in that knows the corpus's words). Sentencepiece's word model splits at whitespace only: punctuation stays
  on its word (``you.``), and a word outside the texts is ``<unk>``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import sentencepiece as spm
import torch
from transformers import MBartConfig, MBartModel, MBartTokenizer


def build_tiny_mbart(
    out_dir: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 512,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ffn_dim: int = 128,
    seed: int = 0,
    model_type: Literal["unigram", "word"] = "unigram",
) -> Path:
    """Train a sentencepiece model on ``texts``, build a small random mBART, save both to ``out_dir``.

    ``model_type``: ``unigram`` (``vocab_size`` pieces) or ``word`` (every word of the texts; ``vocab_size`` is not
    used); see the module docstring."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = [t for t in texts if t.strip()]
    if not corpus:
        raise ValueError("build_tiny_mbart needs at least one non-empty text")
    if model_type == "word":
        # Every word a piece, besides sentencepiece's own <unk> <s> </s>.
        vocab = {"vocab_size": len({w for t in corpus for w in t.split()}) + 3, "use_all_vocab": True}
    elif model_type == "unigram":
        vocab = {"vocab_size": vocab_size}
    else:
        raise ValueError(f"model_type {model_type!r} is not 'unigram' or 'word'")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus),
            model_prefix=prefix,
            **vocab,
            model_type=model_type,
            character_coverage=1.0,
            hard_vocab_limit=False,  # small corpora cannot fill a fixed vocabulary
            num_threads=1,  # deterministic piece scores
            minloglevel=2,
        )
        shutil.copy(prefix + ".model", out / "sentencepiece.bpe.model")
    tokenizer = MBartTokenizer.from_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    config = MBartConfig(
        vocab_size=len(tokenizer),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    MBartModel(config).save_pretrained(str(out))
    return out
