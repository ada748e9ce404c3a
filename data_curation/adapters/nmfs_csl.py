"""NMFs-CSL (Hu et al. 2021): Chinese Sign Language, 1,067 words (610 "confusing" + 457 normal), 32,010 clips
by 10 signers, split by signer into train 25,608 / test 6,402. No official file is public; this adapter
reads the layout NLA-SLR (FangyunWei/SLRT) distributes and consumes:

- split lists ``train.pkl`` / ``test.pkl`` under ``annotation_root``: pickled (optionally gzipped) lists of
  dicts with at least ``name`` and ``label`` (also ``seq_len``, ``video_file``; a ``signer`` key is used when
  present). Unpickling runs code, so they are read only with the adapter option ``allow_pickle: true``;
  a text list (``train.txt``: ``<name> <label>`` per line) works without it (option ``split_files``:
  ``{train: train.txt, test: test.txt}``);
- keypoints ``keypoints_hrnet_dark_coco_wholebody.pkl``: one collection ``name → (T, 133, 3)`` (HRNet-w48
  DARK, COCO-WholeBody) in the coordinates of 512 × 512 resized frames — ``poses: {format: pickle,
  allow_pickle: true, width: 512, height: 512}``; one pose file per clip named ``<name>`` works too.

The release has NO dev split. SLRT ships a ``dev.pkl`` for its training loop, which is not an official split
(and may duplicate the test clips), so it is read only when ``split_files`` names it: by default only
train and test are read, and excluding ``test`` keeps every test clip out of pre-training.

The dataset ships label indices only (SPEC §2): without a vocabulary its samples are UNPAIRED (pose branch
only) and keep their label for ISLR. Option ``vocabulary`` (a file under ``annotation_root``: ``<index>
<word>`` lines or one word per line, see :func:`~data_curation.adapters.isolated.read_vocabulary`) makes
them pairs with the Chinese template ("这个词是{word}。"; set ``text_language`` for a vocabulary in another
language). Option ``pose_name`` overrides the pose file / key template (fields: ``name``, ``label``,
``split``, ``signer``).

An entry's ``seq_len`` (frames of its keypoint sequence) is its expected length, checked by the pipeline.

Rejects: ``malformed_annotation`` (an entry without a name or an integer label), ``unknown_label`` (a label
the vocabulary lacks, only with a vocabulary), ``duplicate_id`` (a name seen earlier in the same split).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from data_curation.adapters.base import DatasetAdapter, isolated_sentence, register_adapter
from data_curation.adapters.isolated import PoseNameTemplate, entry_label, read_split_list, read_vocabulary
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError
from slp.config import is_int

DEFAULT_SPLIT_FILES = {"train": "train.pkl", "test": "test.pkl"}
_TEMPLATE_FIELDS = {"name": "x", "label": 0, "split": "train", "signer": ""}


class SplitListAdapter(DatasetAdapter):
    """ISLR datasets given as per-split lists of ``(name, label)`` entries (NLA-SLR's layout)."""

    default_split_files: dict[str, str] = DEFAULT_SPLIT_FILES

    def __init__(self, config, config_name: str = ""):
        super().__init__(config, config_name)
        self.pose_name = PoseNameTemplate(self.option("pose_name", "{name}"), _TEMPLATE_FIELDS, self.config_name)
        self.vocabulary = self._vocabulary()

    def _vocabulary(self) -> dict[int, str] | None:
        vocabulary = self.option("vocabulary")
        return read_vocabulary(self.annotation_file(str(vocabulary))) if vocabulary else None

    def split_files(self) -> dict[str, str]:
        files = self.option("split_files", self.default_split_files)
        if not isinstance(files, dict):
            raise UserError(f"{self.config_name}: option split_files must map splits to files, got {files!r}")
        unknown = sorted(set(files) - {"train", "dev", "test"})
        if unknown:
            raise UserError(f"{self.config_name}: option split_files names {unknown}; splits are train / dev / test")
        return dict(files)

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        allow_pickle = bool(self.option("allow_pickle", False))
        for split, file in self.split_files().items():
            if split not in self.config.splits:
                continue
            path = self.annotation_file(file)
            seen: set[str] = set()
            for position, entry in enumerate(read_split_list(path, allow_pickle, self.config_name)):
                yield self._entry(split, f"{path.name}[{position}]", entry, seen)

    def _entry(self, split: str, where: str, entry: Any, seen: set[str]) -> CurationRecord | AnnotationReject:
        parsed = entry_label(entry)
        if isinstance(parsed, str):
            name = entry.get("name") if isinstance(entry, dict) else None
            return self.reject(split, str(name or where), "malformed_annotation", f"{where}: {parsed}")
        name, label = parsed
        if name in seen:
            return self.reject(split, name, "duplicate_id", f"{where}: {name!r} appears earlier in this split")
        seen.add(name)
        signer = entry.get("signer")
        fields = dict(name=name, label=label, split=split, signer="" if signer is None else str(signer))
        length = entry.get("seq_len")
        known = dict(signer=fields["signer"], label=label,
                     annotated_frames=length if is_int(length) and length > 0 else 0)
        if self.vocabulary is None:
            return self.record(split, name, self.pose_name.format(fields), **known)
        if label not in self.vocabulary:
            return self.reject(split, name, "unknown_label",
                               f"{where}: label {label} is not in the vocabulary ({len(self.vocabulary)} words)")
        gloss = self.vocabulary[label]
        return self.record(split, name, self.pose_name.format(fields), **known, gloss=gloss,
                           text=isolated_sentence(gloss, self.text_language), paired=True)


@register_adapter
class NMFsCSLAdapter(SplitListAdapter):
    name = "nmfs_csl"
    sign_language = "CSL"
    text_language = "zh"
    source_kind = "lab"
