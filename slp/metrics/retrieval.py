"""Sign-text retrieval: text-to-video and video-to-text recall at 1 / 5 / 10 and median rank (1-based)."""

from __future__ import annotations

import numpy as np
import torch


def _ranks(similarity: np.ndarray) -> np.ndarray:
    """Rank (1-based) of the diagonal entry in each row; ties count against the ground truth (pessimistic)."""
    truth = np.diag(similarity)[:, None]
    return (similarity >= truth).sum(axis=1)


def retrieval_metrics(similarity) -> dict[str, float]:
    """``similarity[i, j]`` = score of video i and text j; pair i is the ground truth of both."""
    sim = similarity.detach().float().cpu().numpy() if torch.is_tensor(similarity) else np.asarray(similarity)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"expected a square similarity matrix, got {sim.shape}")
    out: dict[str, float] = {}
    for name, ranks in (("t2v", _ranks(sim.T)), ("v2t", _ranks(sim))):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * float((ranks <= k).mean())
        out[f"{name}_medr"] = float(np.median(ranks))
    return out
