"""Gloss embeddings for NLA-SLR: one vector per gloss, from the frozen text encoder or from a word-vector file.

NLA-SLR embeds glosses with fastText. Here the default is the frozen mBART encoder of pre-training: the mean of the
gloss's word-piece features, leaving out the ``</s>`` and language tokens (the same for every gloss of a language,
they would only pull all similarities together). Any word-vector text file works instead (fastText ``.vec``,
GloVe…), one entry per line::

    gloss v1 v2 … vD

values separated by spaces; a first line of two integers (fastText's ``count dim`` header) is skipped. A gloss of
several words that the file lacks as a whole is the mean of its words' vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from slp.text.mbart import FrozenTextEncoder


def read_word_vectors(path: str | Path, words: set[str]) -> dict[str, np.ndarray]:
    """The vectors of ``words`` found in the file (streamed: crawl-sized files are never held in memory)."""
    found: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\n").rstrip(" ").split(" ")
            if number == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                continue  # fastText header
            if len(fields) < 2:
                continue  # blank line
            if dim is None:
                dim = len(fields) - 1
            elif len(fields) - 1 != dim:
                raise ValueError(f"{path}:{number}: {len(fields) - 1} values, earlier lines have {dim}")
            if fields[0] in words:
                found[fields[0]] = np.asarray(fields[1:], dtype=np.float32)
    return found


def word_vector_embeddings(glosses: Sequence[str], path: str | Path) -> torch.Tensor:
    """``(G, D)`` vectors of ``glosses`` from a word-vector file; raises on glosses it cannot cover."""
    wanted = {g for g in glosses} | {w for g in glosses for w in g.split()}
    vectors = read_word_vectors(path, wanted)
    missing = [g for g in glosses if g not in vectors and not all(w in vectors for w in g.split())]
    if missing:
        raise ValueError(f"{path} has no vector for {len(missing)} gloss(es), e.g. {missing[:5]}")
    rows = [vectors[g] if g in vectors else np.mean([vectors[w] for w in g.split()], axis=0) for g in glosses]
    return torch.from_numpy(np.stack(rows))


@torch.no_grad()
def text_encoder_embeddings(glosses: Sequence[str], languages: Sequence[str], encoder: FrozenTextEncoder,
                            batch_size: int = 256) -> torch.Tensor:
    """``(G, d_model)`` mean word-piece features of each gloss (in its text language: en, de, zh), on the CPU."""
    rows = []
    for start in range(0, len(glosses), batch_size):
        batch = list(glosses[start : start + batch_size])
        features, mask = encoder.encode(batch, languages[start : start + batch_size])
        # Rows are [w1..wm, </s>, <lang>, pad…]: keep the m word pieces.
        pieces = mask.sum(dim=1, keepdim=True) - 2
        if (pieces == 0).any():
            raise ValueError(f"glosses without word pieces: {[g for g, n in zip(batch, pieces.flatten()) if n == 0]}")
        words = torch.arange(mask.shape[1], device=mask.device)[None, :] < pieces
        weights = words[..., None].to(features.dtype)
        rows.append(((features * weights).sum(dim=1) / weights.sum(dim=1)).float().cpu())
    return torch.cat(rows)
