"""What every dataset adapter shares: the registry, where its files are, how a clip's pose is found, split
names, the ISLR sentence templates, and the extra-hand copies of each record.

A subclass sets ``name``, ``sign_language``, ``text_language`` and ``source_kind``, is registered with the
:func:`register_adapter` decorator, and implements :meth:`annotation_records`, yielding one
:class:`CurationRecord` per clip (or an :class:`AnnotationReject` with a reason for an annotation it cannot use:
it must never raise on one bad row, and never drop one silently). What stops a whole dataset — a missing or
unparsable annotation file, an option outside its choices — is a :class:`~slp.cli_errors.UserError` naming the
config entry and the file or option.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from data_curation.config import DatasetConfig
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError, file_problem, read_user_text
from slp.data.schema import make_key

#: Pose file suffix of each pose format (``auto`` takes the ``pose_suffix`` option, default ``.pose``).
POSE_SUFFIXES = {"pose": ".pose", "mmpose_json": ".json", "npy": ".npy", "npz": ".npz"}

#: Dataset split names → train / dev / test.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "dev", "valid": "dev", "validation": "dev",
               "dev": "dev", "test": "test", "testing": "test"}

#: ISLR gloss → sentence templates per text language (SPEC §2: "apple" → "This word is apple.").
ISOLATED_TEMPLATES = {"en": "This word is {}.", "zh": "这个词是{}。", "de": "Dieses Wort ist {}."}

#: Suffix of the keys of the extra samples whose hands come from the second hand source.
EXTRA_HANDS_KEY_SUFFIX = "xh"


#: Registered adapter name → class (filled by :func:`register_adapter` as the adapter modules are imported).
ADAPTERS: dict[str, type[DatasetAdapter]] = {}


def register_adapter(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Class decorator: register an adapter under its ``name`` (the ``adapter`` field of a curate config)."""
    if not cls.name or ADAPTERS.setdefault(cls.name, cls) is not cls:
        raise ValueError(f"adapter name {cls.name!r} of {cls.__qualname__} is empty or already registered")
    return cls


def isolated_sentence(gloss: str, language: str) -> str:
    if language not in ISOLATED_TEMPLATES:
        raise ValueError(f"no ISLR sentence template for text language {language!r}")
    return ISOLATED_TEMPLATES[language].format(gloss)


def normalise_split(split: str) -> str | None:
    """train / dev / test for a dataset's own split name, None when unknown."""
    return SPLIT_NAMES.get(split.strip().lower())


class DatasetAdapter(ABC):
    name: str = ""  # the registered adapter name (wlasl, msasl, …)
    sign_language: str = ""  # ASL, BSL, CSL, GSL
    text_language: str = ""  # en, de, zh
    source_kind: str = ""  # kind of recording, Table II's "sources" row: lab, web, TV

    def __init__(self, config: DatasetConfig, config_name: str = ""):
        self.config = config
        # The config entry's name: the dataset of every record, and the prefix of its keys.
        self.config_name = config_name or self.name
        self.root = Path(config.annotation_root)
        if config.text_language:
            self.text_language = config.text_language

    # ------------------------------------------------------------------------------------------ for subclasses

    @abstractmethod
    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        """One record per clip of the annotations, or a reject with its reason; never raises on one bad row."""

    def option(self, key: str, default: Any = None) -> Any:
        return self.config.options.get(key, default)

    def choice_option(self, key: str, default: str, choices: Collection[str]) -> str:
        """An option that must be one of ``choices`` (case-insensitive), with an error naming the config."""
        value = str(self.option(key, default)).strip().lower()
        if value not in choices:
            raise UserError(f"{self.config_name}: option {key}={value!r}; expected one of {sorted(choices)}")
        return value

    def annotation_file(self, relative: str) -> Path:
        """A file under the annotation root, with a clear error naming it when it is missing or a folder."""
        path = self.root / str(relative)
        problem = file_problem(path)
        if problem is not None:
            raise UserError(f"{self.config_name}: annotation file {path}: {problem} (annotation_root="
                            f"{self.config.annotation_root})")
        return path

    def read_text(self, path: Path) -> str:
        """An annotation file's text (UTF-8, a BOM dropped); undecodable bytes are an error naming the file."""
        return read_user_text(path, self.config_name)

    def read_json(self, path: Path) -> Any:
        """An annotation JSON file; a truncated or malformed one is an error naming the file, line and column."""
        try:
            return json.loads(self.read_text(path))
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.config_name}: {path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}; "
                            f"truncated?)") from None

    def pose_ref(self, stem: str) -> tuple[str, str | None]:
        """(pose_path, pose_key) of clip ``stem``: ``<stem><suffix>`` under the pose root, or key ``stem`` of a
        collection file (``format: pickle``: the pose root is the file)."""
        fmt = self.config.poses.format
        if fmt == "pickle":
            return "", stem
        suffix = POSE_SUFFIXES.get(fmt) or self.option("pose_suffix", ".pose")
        return f"{stem}{suffix}", None

    def record(self, split: str, source_id: str, pose_stem: str, **fields: Any) -> CurationRecord:
        """A record of this dataset with its languages, pose reference and key filled in."""
        pose_path, pose_key = self.pose_ref(pose_stem)
        values: dict[str, Any] = dict(
            dataset=self.config_name, split=split, source_id=source_id, sign_language=self.sign_language,
            text_language=self.text_language if fields.get("paired") else "", pose_path=pose_path,
            pose_key=pose_key, key=make_key(self.config_name, split, source_id),
        )
        values.update(fields)
        return CurationRecord(**values)

    def reject(self, split: str, source_id: str, reason: str, detail: str) -> AnnotationReject:
        return AnnotationReject(dataset=self.config_name, split=split, source_id=source_id, reason=reason,
                                detail=detail)

    # ---------------------------------------------------------------------------------------- for the pipeline

    def records(self) -> Iterator[CurationRecord | AnnotationReject]:
        """The annotation records and, when the config names an extra hand source, after each record its copy
        whose hands come from that source (the same pose file name under ``extra_hands.root``, or the same key
        of its collection file), under its own key."""
        for item in self.annotation_records():
            yield item
            if self.config.extra_hands is not None and isinstance(item, CurationRecord):
                yield dataclasses.replace(item, extra_hand_path=item.pose_path or item.pose_key,
                                          key=f"{item.key}_{EXTRA_HANDS_KEY_SUFFIX}",
                                          source_id=f"{item.source_id}#{EXTRA_HANDS_KEY_SUFFIX}")
