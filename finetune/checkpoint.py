"""Fine-tuned checkpoints that say what they are: ``best.safetensors`` (or a head directory's ``model.safetensors``,
:mod:`finetune.export`) plus ``head.json`` beside it.

``head.json`` records the task, the head's state (class count, vocabulary… what rebuilds the head without training
data), what its outputs mean when the head's state does not say it (``outputs``: ISLR's class names, the text
languages of a translation or retrieval head; head directories only), the name and shape of every saved tensor and
the weights file's sha256. ``--eval-only`` checks all of it
before it evaluates, so another task's checkpoint, a checkpoint of another head shape, and a damaged file are each
refused with one line saying which, instead of a ``KeyError`` or, worse, a silent evaluation of wrong weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from slp.cli_errors import UserError, file_problem

HEAD_STATE = "head.json"
FORMAT = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_head(head: nn.Module, path: str | Path, task: str, outputs: dict | None = None) -> None:
    """Write the head's weights to ``path`` and its ``head.json`` beside it (with ``outputs`` when given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, path)
    record = {"format": FORMAT, "task": task, "head": head.head_state(),
              "tensors": {k: list(v.shape) for k, v in tensors.items()}, "sha256": _sha256(path)}
    if outputs is not None:
        record["outputs"] = outputs
    (path.with_name(HEAD_STATE)).write_text(json.dumps(record, ensure_ascii=False, indent=1))


def read_head_record(path: str | Path, task: str | None) -> dict:
    """The ``head.json`` of checkpoint ``path``, checked: the files exist, the task is ``task`` (any registered
    one with None) and the weights file is the one that was saved (sha256). Raises :class:`UserError` naming the
    file and what is wrong."""
    path = Path(path)
    if problem := file_problem(path):
        raise UserError(f"checkpoint {path}: {problem}")
    record_path = path.with_name(HEAD_STATE)
    if problem := file_problem(record_path):
        raise UserError(f"{record_path}: {problem} (a fine-tuned checkpoint is best.safetensors with its "
                        f"{HEAD_STATE}, both written by slp-finetune)")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{record_path}: unreadable ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"{record_path}: not a head record of this slp version (format {FORMAT})")
    if task is not None and record["task"] != task:
        raise UserError(f"checkpoint {path} is a {record['task']!r} head, not {task!r}: run --task {record['task']}")
    if _sha256(path) != record["sha256"]:
        raise UserError(f"checkpoint {path} is damaged: its sha256 differs from the one in {record_path}")
    return record


def load_head_weights(head: nn.Module, path: str | Path, record: dict) -> None:
    """Load checked weights into ``head``; a head built to another shape (the config's encoder, say) is refused
    with the first tensor that differs."""
    expected = {k: list(v.shape) for k, v in head.state_dict().items()}
    saved = record["tensors"]
    for name in sorted(set(expected) | set(saved)):
        if expected.get(name) != saved.get(name):
            raise UserError(f"checkpoint {path} does not fit the head built from this config: {name} is "
                            f"{saved.get(name, 'absent')} in the checkpoint, {expected.get(name, 'absent')} here "
                            f"(evaluate with the config and --pretrained encoder it was trained with)")
    try:
        state = load_file(path)
    except SafetensorError as exc:
        raise UserError(f"checkpoint {path}: unreadable safetensors ({exc})") from None
    head.load_state_dict(state)
