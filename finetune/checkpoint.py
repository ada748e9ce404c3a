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

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from slp.cli_errors import UserError, file_problem, read_user_json
from slp.config import is_int

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


#: The fields of ``head.json``: (type, what it holds) for the messages about a field of the wrong type.
RECORD_FIELDS: dict[str, tuple[type, str]] = {
    "format": (int, "an integer"), "task": (str, "a task name"), "head": (dict, "a mapping (the head's state)"),
    "tensors": (dict, "a mapping of tensor names to shapes"), "sha256": (str, "a hex digest")}
#: ``outputs`` (head folders only): each a list of strings.
OUTPUT_FIELDS = ("class_names", "text_languages")


def _json_type(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _record_problem(record) -> str | None:
    """What is wrong with a parsed ``head.json`` (a field missing or of the wrong type), None when nothing is."""
    if not isinstance(record, dict):
        return f"holds {_json_type(record)}, not the mapping of a head record"
    if "format" in record and record["format"] != FORMAT:
        return f"format {record['format']!r}: this slp version reads head records of format {FORMAT}"
    for name, (kind, meaning) in RECORD_FIELDS.items():
        if name not in record:
            return f"field {name!r} is missing (slp-finetune writes {', '.join(RECORD_FIELDS)})"
        if not isinstance(record[name], kind) or isinstance(record[name], bool):
            return f"field {name!r} is {_json_type(record[name])}, expected {meaning}"
    for name, shape in record["tensors"].items():
        if not (isinstance(shape, list) and all(is_int(n) and n >= 0 for n in shape)):
            return f"field 'tensors': the shape of {name} is {shape!r}, expected a list of sizes"
    if not re.fullmatch(r"[0-9a-f]{64}", record["sha256"]):
        return f"field 'sha256' is {record['sha256']!r}, expected 64 hex digits"
    outputs = record.get("outputs", {})
    if not isinstance(outputs, dict):
        return f"field 'outputs' is {_json_type(outputs)}, expected a mapping"
    for name in OUTPUT_FIELDS:
        if name in outputs and not (isinstance(outputs[name], list) and all(isinstance(v, str) for v in outputs[name])):
            return f"field 'outputs.{name}' is {_json_type(outputs[name])}, expected a list of strings"
    return None


def read_head_record(path: str | Path, task: str | None) -> dict:
    """The ``head.json`` of checkpoint ``path``, checked: the files exist, every field is there with its type, the
    task is ``task`` (any registered one with None) and the weights file is the one that was saved (sha256). Raises
    :class:`UserError` naming the file and what is wrong."""
    path = Path(path)
    if problem := file_problem(path):
        raise UserError(f"checkpoint {path}: {problem}")
    record_path = path.with_name(HEAD_STATE)
    if problem := file_problem(record_path):
        raise UserError(f"{record_path}: {problem} (a fine-tuned checkpoint is best.safetensors with its "
                        f"{HEAD_STATE}, both written by slp-finetune)")
    record = read_user_json(record_path)
    if problem := _record_problem(record):
        raise UserError(f"{record_path}: {problem}")
    if task is not None and record["task"] != task:
        raise UserError(f"checkpoint {path} is a {record['task']!r} head, not {task!r}: run --task {record['task']}")
    if _sha256(path) != record["sha256"]:
        raise UserError(f"checkpoint {path} is damaged: its sha256 differs from the one in {record_path}")
    return record


@contextlib.contextmanager
def rebuilding_from(record_path: str | Path) -> Iterator[None]:
    """Around a head's ``build_head`` from the state saved in ``record_path``: a state that lacks a key or holds a
    value of another type (a ``head.json`` edited by hand, or of another version) is a :class:`UserError` naming
    the file, not a ``KeyError`` deep in a head."""
    try:
        yield
    except (KeyError, TypeError, IndexError) as exc:
        raise UserError(f"{record_path}: its 'head' state does not rebuild the head ({type(exc).__name__}: "
                        f"{exc})") from None


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
