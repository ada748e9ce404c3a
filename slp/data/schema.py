"""What one SL-1.5M sample is: its pose array and its metadata, as stored in a shard.

A shard sample has three members:

- ``pose.npy``: float16 ``T × 79 × 3`` (x / width, y / height, confidence); missing points have confidence 0
  and finite coordinates (0), never NaN;
- ``json``: :class:`SampleMeta` as a JSON object;
- ``txt``: the paired text (paired samples only).

Keys contain no dots: WebDataset splits a member name at its first dot into key and extension.

One schema for the writer and the reader: :func:`validate_sample` (the key, :func:`validate_pose` and
:meth:`SampleMeta.validate`) checks every field's type, range and finiteness and raises :class:`InvalidSample`
naming the first field that breaks it. Curation calls it before writing a sample, the shard reader after reading
one, so a sample that reaches a model means what its fields say.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slp.config import is_int, is_number
from slp.pose.layout import NUM_POINTS

#: Text language → mBART language code.
MBART_LANGUAGE_CODES: dict[str, str] = {"en": "en_XX", "de": "de_DE", "zh": "zh_CN"}
#: Sign languages of the paper's Table II.
SIGN_LANGUAGES: tuple[str, ...] = ("ASL", "BSL", "CSL", "GSL")
#: Splits a sample can belong to (every dataset's own split names are normalised to these).
SPLITS: tuple[str, ...] = ("train", "dev", "test")

POSE_DTYPE = np.float16
_KEY_FORBIDDEN = re.compile(r"[^A-Za-z0-9_\-]")


def make_key(*parts: str | int) -> str:
    """A shard key from parts: joined by ``_``, every character outside ``[A-Za-z0-9_-]`` replaced by ``-``.

    Dots in particular become ``-`` so WebDataset does not split the key.
    """
    return "_".join(_KEY_FORBIDDEN.sub("-", str(p)) for p in parts)


@dataclass
class SampleMeta:
    """Metadata of one sample (the ``json`` member of a shard sample)."""

    dataset: str
    split: str
    sign_language: str
    text_language: str  # "en", "de", "zh" ("" when the sample has no text)
    source_id: str
    fps: float
    width: int
    height: int
    signer: str = ""
    frame_start: int = 0  # first frame of the clip in the source pose sequence (0-based, inclusive)
    frame_end: int = -1  # end frame in the source pose sequence (0-based, exclusive)
    text: str = ""
    gloss: str | list[str] = ""  # a gloss (ISLR) or a gloss sequence (CSLR)
    label: int = -1  # class index for ISLR datasets, -1 otherwise
    paired: bool = False
    pose_layout: str = ""  # the keypoint layout the pose file held before conversion (slp.pose.convert.LAYOUTS)
    pose_estimator: str = ""  # the estimator that made the poses, name and version, when known
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbart_language(self) -> str:
        return MBART_LANGUAGE_CODES[self.text_language]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise :class:`InvalidSample` naming the first field whose type or value breaks the schema: strings
        where strings belong, a known split, sign language and text language, a finite positive fps, positive
        integer frame sizes, a frame range with ``0 <= frame_start < frame_end`` (or ``frame_end = -1``: unknown),
        a label >= -1, and a paired sample with a text and its language. (A JSON bool is not a number here.)"""
        for name, ok, expected in _META_CHECKS:
            if not ok(self):
                value = repr(getattr(self, name))
                value = value if len(value) <= 80 else value[:79] + "…"
                raise InvalidSample(f"{name} {value} is not {expected.format(meta=self)}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SampleMeta:
        """Unknown fields (from a newer writer) are ignored; filtering only when there are some halves the cost."""
        if _META_FIELDS.issuperset(data):
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in _META_FIELDS})


_META_FIELDS = frozenset(f.name for f in dataclasses.fields(SampleMeta))


@dataclass
class Sample:
    """A pose clip ready for a shard: ``pose`` is ``T × 79 × 3`` (normalised by frame size)."""

    key: str
    pose: np.ndarray
    meta: SampleMeta

    @property
    def text(self) -> str | None:
        return self.meta.text if self.meta.paired else None


class InvalidSample(ValueError):
    """A sample whose pose or metadata breaks the shard contract."""


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


#: (field, test, what the field must be) in the order :meth:`SampleMeta.validate` checks them. Plain functions on
#: the happy path and messages only formatted on failure: readers run this on every sample they read.
_META_CHECKS: tuple[tuple[str, Callable[[SampleMeta], bool], str], ...] = (
    ("dataset", lambda m: _is_text(m.dataset) and m.dataset != "", "a non-empty string"),
    ("split", lambda m: _is_text(m.split) and m.split in SPLITS, f"one of {SPLITS}"),
    ("sign_language", lambda m: _is_text(m.sign_language) and m.sign_language in SIGN_LANGUAGES,
     f"one of {SIGN_LANGUAGES}"),
    ("text_language", lambda m: _is_text(m.text_language) and (m.text_language == ""
                                                               or m.text_language in MBART_LANGUAGE_CODES),
     f"'' or one of {tuple(MBART_LANGUAGE_CODES)}"),
    ("source_id", lambda m: _is_text(m.source_id), "a string"),
    ("fps", lambda m: is_number(m.fps) and 0 < m.fps < math.inf,
     "a finite positive number"),
    ("width", lambda m: is_int(m.width) and m.width > 0, "a positive integer"),
    ("height", lambda m: is_int(m.height) and m.height > 0, "a positive integer"),
    ("signer", lambda m: _is_text(m.signer), "a string"),
    ("frame_start", lambda m: is_int(m.frame_start) and m.frame_start >= 0, "an integer >= 0"),
    ("frame_end", lambda m: is_int(m.frame_end) and (m.frame_end == -1 or m.frame_end > m.frame_start),
     "-1 or an integer > frame_start ({meta.frame_start})"),
    ("text", lambda m: _is_text(m.text), "a string"),
    ("gloss", lambda m: _is_text(m.gloss) or (isinstance(m.gloss, list) and all(map(_is_text, m.gloss))),
     "a string or a list of strings"),
    ("label", lambda m: is_int(m.label) and m.label >= -1, "an integer >= -1"),
    ("paired", lambda m: isinstance(m.paired, bool), "true or false"),
    ("pose_layout", lambda m: _is_text(m.pose_layout), "a string"),
    ("pose_estimator", lambda m: _is_text(m.pose_estimator), "a string"),
    ("extra", lambda m: isinstance(m.extra, dict), "a mapping"),
    ("text", lambda m: not m.paired or m.text.strip() != "", "a non-empty text (the sample is paired)"),
    ("text_language", lambda m: not m.paired or m.text_language != "", "a language (the sample is paired)"),
)


def validate_sample(sample: Sample) -> None:
    """Raise :class:`InvalidSample` unless the key, the pose (:func:`validate_pose`) and the metadata
    (:meth:`SampleMeta.validate`) keep the schema, and a known frame range spans as many frames as the pose."""
    if not (isinstance(sample.key, str) and sample.key and not _KEY_FORBIDDEN.search(sample.key)):
        raise InvalidSample(f"key {sample.key!r} is not made of [A-Za-z0-9_-] (WebDataset splits keys at dots)")
    validate_pose(sample.pose)
    meta = sample.meta
    meta.validate()
    if meta.frame_end != -1 and meta.frame_end - meta.frame_start != len(sample.pose):
        raise InvalidSample(f"frame range [{meta.frame_start}, {meta.frame_end}) does not span the pose's "
                            f"{len(sample.pose)} frames")


def validate_pose(pose: np.ndarray) -> None:
    """Raise :class:`InvalidSample` unless ``pose`` is a finite ``T × 79 × 3`` array with T ≥ 1."""
    if not isinstance(pose, np.ndarray):
        raise InvalidSample(f"pose is {type(pose).__name__}, not a numpy array")
    if pose.ndim != 3 or pose.shape[1:] != (NUM_POINTS, 3):
        raise InvalidSample(f"pose shape {pose.shape} is not (T, {NUM_POINTS}, 3)")
    if pose.shape[0] < 1:
        raise InvalidSample("pose has no frames")
    if pose.dtype == np.float16:  # exponent bits all set = inf or NaN: one bit test, cheaper than isfinite
        finite = (pose.view(np.uint16) & 0x7C00) != 0x7C00
    else:
        finite = np.isfinite(pose)
    if not finite.all():
        raise InvalidSample(f"pose has {int((~finite).sum())} non-finite values")
