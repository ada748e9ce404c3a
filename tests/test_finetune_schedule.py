"""The fine-tuning learning-rate schedule: StepLR's and the cosine's factors for the new head, and for the
pre-trained parts the same × 0 while frozen (``encoder_frozen_epochs``: they do not move) and × a linear ramp over
``encoder_warmup_epochs``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import get_scheduler

from finetune.config import FinetuneOptimConfig
from finetune.trainer import build_scheduler

EPOCH_STEPS = 3


def _optimizer(weight_decay: float = 0.0) -> tuple[torch.optim.Optimizer, nn.Linear, nn.Linear]:
    torch.manual_seed(0)
    encoder, head = nn.Linear(4, 4), nn.Linear(4, 2)
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": 0.1},
                                   {"params": head.parameters(), "lr": 1.0}], weight_decay=weight_decay)
    return optimizer, encoder, head


def _lrs(optim: FinetuneOptimConfig, steps: int) -> list[list[float]]:
    optimizer, _, _ = _optimizer()
    scheduler = build_scheduler(optimizer, optim, EPOCH_STEPS)
    lrs = []
    for _ in range(steps):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_schedule_multiplies_both_groups_by_gamma_every_step_size_epochs():
    lrs = _lrs(FinetuneOptimConfig(step_size=2, gamma=0.5), 4 * EPOCH_STEPS)
    expected = [0.5 ** (step // (2 * EPOCH_STEPS)) for step in range(4 * EPOCH_STEPS)]
    assert [encoder for encoder, _ in lrs] == pytest.approx([0.1 * f for f in expected])
    assert [head for _, head in lrs] == pytest.approx(expected)


def test_frozen_then_warmed_up_pretrained_parts():
    optim = FinetuneOptimConfig(step_size=100, encoder_frozen_epochs=2, encoder_warmup_epochs=1)
    lrs = _lrs(optim, 4 * EPOCH_STEPS)
    assert [head for _, head in lrs] == [1.0] * (4 * EPOCH_STEPS)
    frozen, ramp = 2 * EPOCH_STEPS, EPOCH_STEPS
    assert [encoder for encoder, _ in lrs[:frozen]] == [0.0] * frozen
    assert [encoder for encoder, _ in lrs[frozen:]] == pytest.approx(
        [0.1 * min(1.0, (k + 1) / (ramp + 1)) for k in range(2 * EPOCH_STEPS)])
    assert lrs[frozen + ramp][0] == pytest.approx(0.1)


def test_cosine_schedule_is_transformers_and_the_freeze_applies_to_it_too():
    optim = FinetuneOptimConfig(schedule="cosine", epochs=4, warmup=0.25, encoder_frozen_epochs=1)
    lrs = _lrs(optim, 4 * EPOCH_STEPS)
    reference, _, _ = _optimizer()
    cosine = get_scheduler("cosine", reference, num_warmup_steps=EPOCH_STEPS, num_training_steps=4 * EPOCH_STEPS)
    expected = []
    for _ in range(4 * EPOCH_STEPS):
        expected.append(reference.param_groups[1]["lr"])
        reference.step()
        cosine.step()
    assert [head for _, head in lrs] == pytest.approx(expected)
    assert [encoder for encoder, _ in lrs] == pytest.approx(
        [0.0] * EPOCH_STEPS + [0.1 * f for f in expected[EPOCH_STEPS:]])


def test_frozen_parts_do_not_move_even_with_weight_decay():
    optimizer, encoder, head = _optimizer(weight_decay=0.1)
    scheduler = build_scheduler(optimizer, FinetuneOptimConfig(encoder_frozen_epochs=1), EPOCH_STEPS)
    before = [p.detach().clone() for p in (*encoder.parameters(), *head.parameters())]
    for _ in range(EPOCH_STEPS):
        optimizer.zero_grad()
        head(encoder(torch.randn(8, 4))).square().sum().backward()
        optimizer.step()
        scheduler.step()
    after = [*encoder.parameters(), *head.parameters()]
    assert all(torch.equal(b, a) for b, a in zip(before[:2], after[:2]))
    assert not any(torch.equal(b, a) for b, a in zip(before[2:], after[2:]))
    optimizer.zero_grad()
    head(encoder(torch.randn(8, 4))).square().sum().backward()
    optimizer.step()  # the first step after the frozen epoch moves them
    assert not torch.equal(before[0], encoder.weight)
