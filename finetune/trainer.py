"""The fine-tuning loop shared by every task (accelerate): encoder at 0.1× the head's learning rate, dev
evaluation every epoch, best checkpoint kept as safetensors, final test evaluation of the best, ``metrics.json``
and a table printed in the paper's layout.

A task is one head file in ``finetune/``, registered by name (:mod:`finetune.tasks`), exposing:

- ``keep(sample) -> bool``: the samples of a split this task uses (labelled clips, gloss sequences, texts…);
- ``build_head(cfg, encoder, train, state) -> nn.Module``: the head around the encoder. ``train`` is the training
  split (empty in ``--eval-only``); ``state`` is what the head's ``head_state()`` returned when it was trained
  (class count, vocabulary…), saved in ``head.json`` beside the checkpoint (:mod:`finetune.checkpoint`), else None;
- ``MAIN_METRIC``, ``HIGHER_IS_BETTER`` (which dev metric picks the best epoch) and ``results_table(dev, test)``;
- optionally a ``total_steps`` attribute on the head, which the trainer sets to the optimiser steps of the whole
  training once its loader is prepared;
- ``build_head`` raises ``ValueError`` for options that do not go together (the command says it in one line);
- optionally ``uses_pose_encoder(cfg) -> bool``: False when the configured head reads no pose encoder (then a
  ``--pretrained`` encoder is refused rather than ignored);
- optionally a ``load_pretrained(name_or_path) -> list[str]`` method on the head: with ``--pretrained`` (when
  training) it loads what else of the pre-training export the head starts from and names it (retrieval: the
  alignment module); the trainer prints what was loaded.

The head works on tensors, as Hugging Face models do:

- ``collator(train) -> callable``: turns a list of samples into a dict of tensors, the keyword arguments of
  ``forward`` (``train=True``) or of ``predict`` (``train=False``). It runs in the DataLoader's worker processes, so
  it is a small picklable object that holds no weights, and it draws any randomness (ISLR's frames) from torch's RNG:
  in workers (``data.num_workers`` > 0) the DataLoader seeds it per (rank, worker) from the seeded loader; with no
  workers it is the main process's RNG (``set_seed``), shared with dropout and the heads' own draws;
- ``forward(**batch) -> loss``: the training loss of a batch (its randomness, ISLR's mixup, from torch's RNG too);
- ``predict(**batch) -> list``: one picklable output per sample of an evaluation batch (class scores, a decoded
  sequence, a translation, embeddings), on the CPU;
- ``metrics(outputs, samples) -> dict``: the corpus metrics of a whole split from its outputs in dataset order;
- ``head_state() -> dict``: its JSON state.

Under several processes (``accelerate launch``) the prepared DataLoader deals each rank its batches of the same
seeded epoch order, and every rank runs the same number of steps (accelerate's ``even_batches`` tops the last round
up with samples from the start of the epoch), so no rank waits in an all-reduce the others never reach. Gradients
are averaged. Evaluation (:func:`evaluate`) cuts a split into the batches a single process would use; rank r
predicts batches r, r + P, …, the per-sample outputs are gathered to every rank in dataset order and every rank
computes the metrics of the whole split from them: the same numbers, bit for bit, whatever the number of processes.
Rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, broadcast, gather_object, send_to_device, set_seed
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import get_scheduler

from finetune.checkpoint import HEAD_STATE, load_head_weights, read_head_record, rebuilding_from, save_head
from finetune.config import FinetuneConfig, FinetuneOptimConfig
from finetune.data import load_split
from finetune.export import (
    WEIGHTS_NAME,
    head_folder,
    load_finetuned,
    save_finetuned,
    training_card_data,
    vocabulary_mismatch,
)
from finetune.tasks import task_module
from slp.cli_errors import UserError
from slp.data.schema import Sample
from slp.data.shards import write_summary
from slp.models.sign_encoder import SignPoseEncoder
from slp.threads import local_ranks, threads_per_process, torch_threads

BEST = "best.safetensors"
MODEL_DIR = "model"  # the self-contained head folder a training run ends with (finetune.export)


def build_encoder(cfg: FinetuneConfig, pretrained: str | None) -> SignPoseEncoder:
    return SignPoseEncoder.from_pretrained(pretrained) if pretrained else SignPoseEncoder(cfg.encoder)


def parameter_groups(model: nn.Module, cfg: FinetuneConfig) -> list[dict]:
    """Pre-trained parts (the encoder, and any module a head lists in ``pretrained_modules``) at
    ``encoder_lr_scale`` × lr, the randomly initialised head at lr; frozen parameters are left out."""
    pretrained = [model.encoder, *getattr(model, "pretrained_modules", ())]
    scaled = [p for m in pretrained for p in m.parameters() if p.requires_grad]
    ids = {id(p) for p in scaled}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": scaled, "lr": cfg.optim.lr * cfg.optim.encoder_lr_scale},
            {"params": head, "lr": cfg.optim.lr}]


def build_scheduler(optimizer: torch.optim.Optimizer, optim: FinetuneOptimConfig, epoch_steps: int) -> LambdaLR:
    """The learning-rate schedule, stepped once per optimiser step: × gamma every ``step_size`` epochs (StepLR's), or
    transformers' linear warm-up then cosine decay over all steps. The pre-trained parts (the first group of
    :func:`parameter_groups`) follow it × 0 for ``encoder_frozen_epochs``, then × a linear ramp to 1 over
    ``encoder_warmup_epochs``. (Frozen by lr 0, their batch-norm statistics still follow the data.)"""
    steps = max(epoch_steps, 1)
    if optim.schedule == "step":
        def schedule(step: int) -> float:
            return optim.gamma ** (step // (optim.step_size * steps))
    else:
        total = optim.epochs * steps
        schedule = get_scheduler("cosine", optimizer, num_warmup_steps=int(optim.warmup * total),
                                 num_training_steps=total).lr_lambdas[0]
    frozen, ramp = optim.encoder_frozen_epochs * steps, optim.encoder_warmup_epochs * steps

    def pretrained(step: int) -> float:
        return 0.0 if step < frozen else schedule(step) * min(1.0, (step - frozen + 1) / (ramp + 1))

    return LambdaLR(optimizer, [pretrained, schedule])


def _seed_worker(worker_id: int, process_index: int, num_workers: int) -> None:
    # Every rank's loader is seeded alike (its generator is synchronised across ranks), so its workers would
    # repeat the other ranks' draws: give each (rank, worker) its own stream.
    torch.manual_seed(torch.initial_seed() + process_index * num_workers)


def train_loader(cfg: FinetuneConfig, train: list[Sample], collate: Callable[[list[Sample]], dict[str, torch.Tensor]],
                 process_index: int) -> DataLoader:
    """The training DataLoader, before ``accelerator.prepare``: reshuffled every epoch from ``cfg.seed``."""
    workers = cfg.data.num_workers
    return DataLoader(train, batch_size=cfg.optim.batch_size, shuffle=True, collate_fn=collate, num_workers=workers,
                      generator=torch.Generator().manual_seed(cfg.seed), persistent_workers=workers > 0,
                      worker_init_fn=functools.partial(_seed_worker, process_index=process_index,
                                                       num_workers=workers) if workers else None)


def predict(head: nn.Module, samples: list[Sample], batch_size: int) -> list:
    """``head.predict`` of every sample, in dataset order, on every rank; each rank predicts a slice of the batches.

    The batches are those of one process (consecutive samples), whatever the number of processes, so every
    sample's output is the one a single process computes.
    """
    state = PartialState()
    collate = head.collator(train=False)
    starts = range(0, len(samples), batch_size)
    mine = []
    with torch.no_grad():
        for index in range(state.process_index, len(starts), state.num_processes):
            batch = send_to_device(collate(samples[starts[index] : starts[index] + batch_size]), head.device)
            mine.append((index, head.predict(**batch)))
    gathered = sorted(gather_object(mine), key=lambda item: item[0])
    return [output for _, outputs in gathered for output in outputs]


def evaluate(head: nn.Module, samples: list[Sample], batch_size: int) -> dict:
    """The metrics of a split, the same on every rank (see :func:`predict`)."""
    head.eval()
    return head.metrics(predict(head, samples, batch_size), samples)


def _improved(value: float, best: float | None, higher_is_better: bool) -> bool:
    return best is None or (value > best if higher_is_better else value < best)


def run_task(cfg: FinetuneConfig, pretrained: str | None = None, checkpoint: str | None = None, *,
             allow_vocabulary_mismatch: bool = False) -> dict:
    """Fine-tune (or, with ``checkpoint``, only evaluate) the head of ``cfg.task``; returns the metrics written.

    ``checkpoint`` is a ``best.safetensors`` (with its ``head.json``), rebuilt from ``cfg`` and ``pretrained``, or a
    head folder (:mod:`finetune.export`), whose own config and encoder make the head: ``cfg`` then gives the data,
    the batch size, the precision and the output only. A training run ends by writing ``<output>/model``, the head
    folder of its best checkpoint.

    On CPU the run takes its share of the cores (:mod:`slp.threads`): this node's ranks and each rank's DataLoader
    workers are the processes that share them. The caller's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        threads = threads_per_process(local_ranks() * (1 + cfg.data.num_workers))
    with torch_threads(threads):
        return _run_task(cfg, pretrained, checkpoint, allow_vocabulary_mismatch)


def _run_task(cfg: FinetuneConfig, pretrained: str | None, checkpoint: str | None,
              allow_vocabulary_mismatch: bool) -> dict:
    task = task_module(cfg.task)
    # Heads use all their parameters in every step; DDP then needs no search for unused ones.
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
    # Dropout and the heads' random draws differ between ranks; the initial weights are rank 0's on every rank
    # (DDP broadcasts them) and the shuffled order is the same (the loader's own seeded generator).
    set_seed(cfg.seed, device_specific=True)
    out = Path(cfg.output)
    data = cfg.data
    # Fail fast: the options, the checkpoint, then the data, before a head loads its text model.
    if pretrained and not getattr(task, "uses_pose_encoder", lambda _: True)(cfg):
        raise UserError(f"--pretrained {pretrained}: this {cfg.task} configuration does not use the pose encoder")
    training = checkpoint is None
    folder = head_folder(checkpoint) if checkpoint and Path(checkpoint).is_dir() else None
    if folder is not None:
        if pretrained:
            raise UserError(f"--pretrained {pretrained}: the head folder {checkpoint} holds its own encoder")
        checkpoint = str(folder / WEIGHTS_NAME)
    record = read_head_record(checkpoint, cfg.task) if checkpoint else None
    dev = load_split(data.shards, data.dataset, data.dev_split, task.keep, data.labels)
    test = load_split(data.shards, data.dataset, data.test_split, task.keep, data.labels)
    train = [] if checkpoint else load_split(data.shards, data.dataset, data.train_split, task.keep, data.labels)
    # An ISLR head of another vocabulary would score these labels as its own classes: refused unless asked for.
    if record and not allow_vocabulary_mismatch and (
            problem := vocabulary_mismatch(record, Path(checkpoint).with_name(HEAD_STATE), dev + test)):
        raise UserError(f"{problem} (--allow-vocabulary-mismatch evaluates it anyway)")
    if folder is not None:
        model = load_finetuned(folder).head
    else:
        try:
            encoder = build_encoder(cfg, pretrained)
            with rebuilding_from(Path(checkpoint).with_name(HEAD_STATE)) if record else contextlib.nullcontext():
                model = task.build_head(cfg, encoder, train, record["head"] if record else None)
        except ValueError as exc:  # a head refuses options that do not go together: the user's config, one line
            raise UserError(f"--task {cfg.task}: {exc}") from None
    if pretrained and not checkpoint:  # (a checkpoint replaces every weight)
        loaded = ["encoder", *(model.load_pretrained(pretrained) if hasattr(model, "load_pretrained") else [])]
        if accelerator.is_main_process:
            print(f"--pretrained {pretrained}: loaded {', '.join(loaded)}")
    batch = cfg.optim.batch_size
    history = []
    if not checkpoint:
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.optim.weight_decay)
        loader = train_loader(cfg, train, model.collator(train=True), accelerator.process_index)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        steps = len(loader)
        scheduler = build_scheduler(optimizer, cfg.optim, steps)
        head = accelerator.unwrap_model(model)
        if hasattr(head, "total_steps"):  # a head whose schedule follows training (ISLR's classifier integration)
            head.total_steps = cfg.optim.epochs * steps
        writer = SummaryWriter(str(out / "tensorboard")) if accelerator.is_main_process else None
        bar = tqdm(total=cfg.optim.epochs * steps, desc=f"fine-tuning {cfg.task}", unit="step",
                   disable=not accelerator.is_main_process)
        best, began, seen, step = None, time.time(), 0, 0
        for epoch in range(cfg.optim.epochs):
            model.train()
            for inputs in loader:
                loss = model(**inputs)
                optimizer.zero_grad()
                accelerator.backward(loss)
                if cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                # The mean of the ranks' losses (for retrieval, whose ranks each hold a share, the global loss).
                value = accelerator.reduce(loss.detach(), "mean").item()
                step += 1
                seen += len(next(iter(inputs.values()))) * accelerator.num_processes
                bar.update()
                bar.set_postfix(loss=f"{value:.3f}", samples_s=f"{seen / (time.time() - began):.0f}")
                if writer is not None:
                    writer.add_scalar("train/loss", value, step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[-1], step)
            head = accelerator.unwrap_model(model)
            # Buffers (batch-norm statistics) follow each rank's own batches: evaluate rank 0's, the ones saved.
            broadcast(list(head.buffers()))
            with accelerator.autocast():  # predict bypasses the prepared forward: the run's precision, explicitly
                metrics = evaluate(head, dev, batch)
            history.append({"epoch": epoch + 1, "loss": value, **metrics})
            improved = _improved(metrics[task.MAIN_METRIC], best, task.HIGHER_IS_BETTER)
            best = metrics[task.MAIN_METRIC] if improved else best
            if accelerator.is_main_process:
                writer.add_scalar(f"dev/{task.MAIN_METRIC}", metrics[task.MAIN_METRIC], epoch + 1)
                if improved:
                    save_head(head, out / BEST, cfg.task)
            accelerator.wait_for_everyone()
        bar.close()
        if writer is not None:
            writer.close()
        checkpoint = str(out / BEST)
        record = read_head_record(checkpoint, cfg.task)
        model = accelerator.unwrap_model(model)
    load_head_weights(model, checkpoint, record)
    model.to(accelerator.device)  # --eval-only never went through accelerator.prepare
    with accelerator.autocast():
        dev_metrics, test_metrics = evaluate(model, dev, batch), evaluate(model, test, batch)
    results = {"task": cfg.task, "checkpoint": checkpoint, "pretrained": pretrained,
               "processes": accelerator.num_processes, "dev": dev_metrics, "test": test_metrics,
               "history": history, "head_state": model.head_state(), "config": dataclasses.asdict(cfg)}
    if training:
        results["model"] = str(out / MODEL_DIR)
    if accelerator.is_main_process:
        write_summary(out / "metrics.json", results)
        print(task.results_table(results["dev"], results["test"]))
        if training:
            save_finetuned(model, cfg, out / MODEL_DIR, train=train, results=results, pretrained=pretrained,
                           card_data=training_card_data(cfg))
            print(f"head folder (loads with no config or data: finetune.export.load_finetuned, slp-predict --model): "
                  f"{out / MODEL_DIR}")
    # Every rank leaves together and without a live process group: a rank exiting while the group's threads still
    # run can abort ("terminate called without an active exception") and fail the launch after the work is done.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
