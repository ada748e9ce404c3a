"""Objectives against direct loop implementations, on random inputs with padding on both sides."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slp.losses import (
    LearnableTemperature,
    coarse_similarity,
    fine_grained_similarity,
    global_infonce,
    hierarchical_mask,
    masked_reconstruction_loss,
)


def _inputs(b=5, c=4, n=6, m=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    sign, text = torch.randn(b, n, d, generator=g), torch.randn(c, m, d, generator=g)
    sign_mask = torch.ones(b, n, dtype=torch.bool)
    text_mask = torch.ones(c, m, dtype=torch.bool)
    sign_mask[0, 3:] = False
    sign_mask[2, 5:] = False
    text_mask[1, 2:] = False
    text_mask[3, 6:] = False
    return sign, sign_mask, text, text_mask


def _fine_grained_loop(sign, sign_mask, text, text_mask):
    out = torch.zeros(sign.shape[0], text.shape[0], dtype=torch.float64)
    for i in range(sign.shape[0]):
        s = F.normalize(sign[i][sign_mask[i]].double(), dim=-1)
        for j in range(text.shape[0]):
            t = F.normalize(text[j][text_mask[j]].double(), dim=-1)
            rows = []
            for r in range(s.shape[0]):
                z = torch.stack([s[r] @ t[k] for k in range(t.shape[0])])
                w = torch.exp(z) / torch.exp(z).sum()
                rows.append((w * z).sum())
            out[i, j] = torch.stack(rows).mean()
    return out


def test_fine_grained_similarity_matches_loop_and_ignores_padding():
    sign, sign_mask, text, text_mask = _inputs()
    got = fine_grained_similarity(sign, sign_mask, text, text_mask)
    torch.testing.assert_close(got.double(), _fine_grained_loop(sign, sign_mask, text, text_mask), atol=1e-5, rtol=0)
    sign2, text2 = sign.clone(), text.clone()
    sign2[~sign_mask] = 123.0
    text2[~text_mask] = -55.0
    torch.testing.assert_close(fine_grained_similarity(sign2, sign_mask, text2, text_mask), got)


def test_chunked_equals_unchunked_in_values_and_gradients():
    sign, sign_mask, text, text_mask = _inputs(b=9, c=9)
    grads = []
    for chunk in (None, 2, 4):
        s, t = sign.clone().requires_grad_(), text.clone().requires_grad_()
        sim = fine_grained_similarity(s, sign_mask, t, text_mask, chunk_size=chunk)
        (sim * torch.arange(sim.numel()).reshape(sim.shape)).sum().backward()
        grads.append((sim.detach(), s.grad, t.grad))
    for sim, gs, gt in grads[1:]:
        torch.testing.assert_close(sim, grads[0][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(gs, grads[0][1], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(gt, grads[0][2], atol=1e-6, rtol=1e-5)


def test_coarse_similarity_matches_loop():
    sign, sign_mask, text, text_mask = _inputs()
    got = coarse_similarity(sign, sign_mask, text, text_mask)
    for i in range(sign.shape[0]):
        for j in range(text.shape[0]):
            a = sign[i][sign_mask[i]].mean(0)
            b = text[j][text_mask[j]].mean(0)
            assert got[i, j].item() == pytest.approx(F.cosine_similarity(a, b, dim=0).item(), abs=1e-5)


def test_symmetric_infonce_matches_loop_over_pairs_and_clamps_temperature():
    sign, sign_mask, text, text_mask = _inputs(b=5, c=5)
    paired = torch.tensor([True, True, False, True, True])  # the unpaired sample takes no part
    sim = coarse_similarity(sign, sign_mask, text, text_mask)[paired][:, paired]
    temperature = LearnableTemperature(0.07)
    assert temperature().item() == pytest.approx(0.07)
    tau, k = 0.07, 4
    t2v = -sum(math.log(math.exp(sim[i, i] / tau) / sum(math.exp(sim[i, j] / tau) for j in range(k)))
               for i in range(k)) / k
    v2t = -sum(math.log(math.exp(sim[i, i] / tau) / sum(math.exp(sim[j, i] / tau) for j in range(k)))
               for i in range(k)) / k
    loss, value = global_infonce(coarse_similarity, temperature(), sign, sign_mask, text, text_mask, paired)
    assert loss.item() == pytest.approx((t2v + v2t) / 2, rel=1e-5) and value.item() == pytest.approx(loss.item())
    with torch.no_grad():
        temperature.log_temperature.fill_(math.log(1e-5))
    assert temperature().item() == pytest.approx(0.01)


def test_reconstruction_scores_masked_joints_only_weighted_by_confidence():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 4, 79, 3, generator=g)
    pred = torch.rand(2, 4, 79, 2, generator=g)
    mask = torch.rand(2, 4, 79, generator=g) < 0.4
    loss, value = masked_reconstruction_loss(pred, target, mask)
    assert value == loss  # one process: its share is the whole loss
    num = den = 0.0
    for idx in mask.nonzero().tolist():
        b, t, j = idx
        c = target[b, t, j, 2].item()
        num += c * ((pred[b, t, j] - target[b, t, j, :2]) ** 2).sum().item()
        den += c
    assert loss.item() == pytest.approx(num / den, rel=1e-5)
    changed = pred.clone()
    changed[~mask] += 10.0  # predictions at unmasked joints do not matter
    assert masked_reconstruction_loss(changed, target, mask)[0].item() == pytest.approx(loss.item(), rel=1e-6)
    assert masked_reconstruction_loss(pred, target, torch.zeros_like(mask))[0].item() == 0.0


def test_hierarchical_mask_ratio_padding_and_determinism():
    frame_mask = torch.ones(64, 100, dtype=torch.bool)
    frame_mask[::2, 60:] = False
    mask = hierarchical_mask(frame_mask, 0.4, np.random.default_rng(0))
    assert mask.shape == (64, 100, 79)
    assert not mask[~frame_mask].any()
    assert abs(mask[frame_mask].float().mean().item() - 0.4) < 0.03
    # All three levels occur: whole frames masked and isolated joints masked.
    whole = mask.all(dim=-1) & frame_mask
    assert whole.any() and (mask.any(dim=-1) & ~mask.all(dim=-1)).any()
    again = hierarchical_mask(frame_mask, 0.4, np.random.default_rng(0))
    assert torch.equal(mask, again)
    assert not hierarchical_mask(frame_mask, 0.0).any()
