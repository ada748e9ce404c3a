"""What the four ISLR adapters (WLASL, MS-ASL, NMFs-CSL, SLR500) share: pose-file name templates, label
vocabularies (index → word files), and the SLRT split lists NLA-SLR distributes for NMFs-CSL / SLR500.

Every ISLR sample becomes a sign-text pair through the fixed template of its text language
(:func:`~data_curation.adapters.base.isolated_sentence`); a dataset whose labels have no words (NMFs-CSL
without a user-supplied vocabulary) gives unpaired samples that keep their label.
"""

from __future__ import annotations

import gzip
import pickle
import re
import string
from pathlib import Path
from typing import Any

from slp.cli_errors import UserError, read_user_text

#: Clip layouts of the pose files: one file per annotated clip (the clip is the whole sequence), or one file
#: per source video that the annotation's frame / time range cuts.
CLIP_MODES = ("trimmed", "raw")

_INDEXED_LINE = re.compile(r"^\s*(\d+)\s+(\S.*?)\s*$")


class PoseNameTemplate:
    """A ``str.format`` template naming a clip's pose file (without suffix) from annotation fields.

    Checked once against the fields the adapter provides, so a typo fails at start-up naming the fields
    that exist, not on the millionth record.
    """

    def __init__(self, template: str, fields: dict[str, Any], owner: str):
        self.template = str(template)
        try:
            names = {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(self.template)
                     if name is not None}
        except ValueError as exc:  # an unbalanced brace
            raise UserError(f"{owner}: option pose_name {self.template!r}: {exc}") from None
        unknown = sorted(n for n in names if n not in fields)
        if not names or unknown or "" in names:
            raise UserError(f"{owner}: option pose_name {self.template!r} must name fields among {sorted(fields)}"
                            + (f" (unknown: {unknown})" if unknown else ""))
        try:
            self.format(fields)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:  # "{index:q}", "{gloss.x}"
            raise UserError(f"{owner}: option pose_name {self.template!r}: {exc}") from None

    def format(self, fields: dict[str, Any]) -> str:
        return self.template.format(**fields)


def read_vocabulary(path: str | Path) -> dict[int, str]:
    """Label → word from a vocabulary file (UTF-8, optional BOM, LF or CRLF).

    Two layouts: every non-empty line ``<index><whitespace><word>`` (``000123\\t你好``, SLR500's
    ``dictionary.txt``, WLASL's ``wlasl_class_list.txt``), or one word per line with the line number as the
    label (then no line may be empty: it would shift every later label). Duplicate indices are an error.
    """
    path = Path(path)
    lines = read_user_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UserError(f"{path}: empty vocabulary")
    indexed = [_INDEXED_LINE.match(line) for line in lines if line.strip()]
    if all(indexed):
        vocab: dict[int, str] = {}
        for match in indexed:
            index, word = int(match.group(1)), match.group(2)
            if index in vocab:
                raise UserError(f"{path}: label {index} appears twice ({vocab[index]!r}, {word!r})")
            vocab[index] = word
        return vocab
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise UserError(f"{path}: line {number} is empty in a one-word-per-line vocabulary (labels are line "
                             f"numbers, so an empty line would shift every later label)")
    return {i: line.strip() for i, line in enumerate(lines)}


def read_split_list(path: Path, allow_pickle: bool, owner: str) -> list[Any]:
    """The entries of one split file: an SLRT pickle (optionally gzipped) — a list of dicts with at least
    ``name`` and ``label`` — or a text list of ``<name> <label>`` lines (``#`` comments, blank lines skipped).

    Pickles run code when loaded, so they are read only with the adapter option ``allow_pickle: true``.
    Entries are returned unchecked: the adapter rejects malformed ones one by one.
    """
    if path.suffix in (".txt", ".tsv", ".lst"):
        entries: list[Any] = []
        for number, line in enumerate(read_user_text(path).splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.rsplit(None, 1)
            if len(parts) != 2:
                entries.append({"_malformed": f"{path.name}:{number}: {line!r} is not '<name> <label>'"})
                continue
            entries.append({"name": parts[0], "label": parts[1], "_line": number})
        return entries
    if not allow_pickle:
        raise UserError(f"{owner}: {path} is a pickle, and unpickling runs code from the file; read it only from a "
                         f"source you trust, with the adapter option allow_pickle: true (or give a text split list "
                         f"of '<name> <label>' lines)")
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - opted in above
    except Exception as exc:  # a corrupt pickle raises whatever the unpickler trips on
        raise UserError(f"{owner}: {path} is not a readable split pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(data, dict):  # name → entry, or name → label
        data = [dict(v, name=k) if isinstance(v, dict) else {"name": k, "label": v} for k, v in data.items()]
    if not isinstance(data, (list, tuple)):
        raise UserError(f"{owner}: {path} holds a {type(data).__name__}, expected a list of {{name, label}} dicts")
    return list(data)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def entry_label(entry: Any) -> tuple[str, int] | str:
    """(name, label) of a split-list entry, or the reason it cannot be used."""
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, not a dict"
    if "_malformed" in entry:
        return entry["_malformed"]
    name, label = entry.get("name"), entry.get("label")
    if not isinstance(name, str) or not name.strip():
        return f"entry without a name: {_short(entry)}"
    try:
        value = int(label)
    except (TypeError, ValueError):
        return f"{name}: label {label!r} is not an integer"
    if isinstance(label, float) and label != value or isinstance(label, bool):
        return f"{name}: label {label!r} is not an integer"
    if value < 0:
        return f"{name}: negative label {value}"
    return name.strip(), value


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
