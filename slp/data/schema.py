"""What one SL-1.5M sample is: its pose array and its metadata, as stored in a shard.

A shard sample has three members:

- ``pose.npy``: float16 ``T × 79 × 3`` (x / width, y / height, confidence); missing points have confidence 0
  and finite coordinates (0), never NaN;
- ``json``: :class:`SampleMeta` as a JSON object;
- ``txt``: the paired text (paired samples only).

Keys contain no dots: WebDataset splits a member name at its first dot into key and extension.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slp.pose.layout import NUM_POINTS

#: Text language → mBART language code.
MBART_LANGUAGE_CODES: dict[str, str] = {"en": "en_XX", "de": "de_DE", "zh": "zh_CN"}
#: Sign languages of the paper's Table II.
SIGN_LANGUAGES: tuple[str, ...] = ("ASL", "BSL", "CSL", "GSL")

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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbart_language(self) -> str:
        return MBART_LANGUAGE_CODES[self.text_language]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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


def validate_pose(pose: np.ndarray) -> None:
    """Raise :class:`InvalidSample` unless ``pose`` is a finite ``T × 79 × 3`` array with T ≥ 1."""
    if not isinstance(pose, np.ndarray):
        raise InvalidSample(f"pose is {type(pose).__name__}, not a numpy array")
    if pose.ndim != 3 or pose.shape[1:] != (NUM_POINTS, 3):
        raise InvalidSample(f"pose shape {pose.shape} is not (T, {NUM_POINTS}, 3)")
    if pose.shape[0] < 1:
        raise InvalidSample("pose has no frames")
    if pose.dtype == np.float16:  # exponent bits all set = inf or NaN; a bit test is 3× faster than isfinite
        finite = (pose.view(np.uint16) & 0x7C00) != 0x7C00
    else:
        finite = np.isfinite(pose)
    if not finite.all():
        raise InvalidSample(f"pose has {int((~finite).sum())} non-finite values")
