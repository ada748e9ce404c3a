"""SLR500 (USTC isolated CSL, Huang et al. 2018): Chinese Sign Language, 500 words × 50 signers × 5
repetitions = 125,000 clips, recorded in a lab (Kinect v2 colour video, 1280 × 720). No official file is
public; the release lays clips out as ``<class>/P<signer>_<…>_color.avi`` — the folder is the 6-digit label
(``000000`` … ``000499``), the name starts with the signer (``P01`` … ``P50``) — with a ``dictionary.txt`` of
``<6-digit label> <word>`` lines. The release has no split files: the common protocol (Huang et al.;
SignBERT, BEST) trains on signers 1-36 and tests on 37-50 (option ``train_signers``, default 36). There is
no dev split.

Clips are enumerated, in sorted order, from (first that applies):

- option ``clip_list``: a text file under ``annotation_root`` of clip paths, one per line (e.g. the output of
  ``find color -name '*.avi'``); the pose of ``…/000123/P07_02_00_1_color.avi`` is ``000123/P07_02_00_1_color``
  under the pose root (template ``{class_dir}/{stem}``);
- a pickle collection (``poses.format: pickle``): its keys;
- otherwise the pose files under the pose root (``<class>/<name><suffix>``, any depth above the class folder).

Option ``dictionary`` (default ``dictionary.txt``; ``null`` for none) gives the words: samples are pairs with
the Chinese template ("这个词是{word}。"). Without a dictionary they are unpaired and keep their label.
Option ``pose_name`` overrides the template (fields: ``name`` — the clip's path without suffix —,
``class_dir``, ``stem``, ``label``, ``signer``, ``split``). ``source_id`` is ``<class_dir>/<stem>``.

Rejects: ``unparsable_name`` (no 6-digit class folder, or a file name not starting with ``P<signer>``),
``unknown_label`` (a label the dictionary lacks), ``duplicate_id`` (the same class / file name twice).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from data_curation.adapters.base import POSE_SUFFIXES, DatasetAdapter, isolated_sentence, register_adapter
from data_curation.adapters.isolated import PoseNameTemplate, read_vocabulary
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError, folder_problem
from slp.config import is_int
from slp.pose.readers import PoseFormatError, read_pickle_collection

_SIGNER = re.compile(r"^P(\d+)(?:_|$)", re.IGNORECASE)
_CLASS_DIR = re.compile(r"^\d+$")
_VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")
_TEMPLATE_FIELDS = {"name": "x", "class_dir": "000000", "stem": "P01", "label": 0, "signer": "P01", "split": "train"}


@register_adapter
class SLR500Adapter(DatasetAdapter):
    name = "slr500"
    sign_language = "CSL"
    text_language = "zh"
    source_kind = "lab"

    def __init__(self, config, config_name: str = ""):
        super().__init__(config, config_name)
        self.train_signers = self.option("train_signers", 36)
        if not is_int(self.train_signers) or self.train_signers < 0:
            raise UserError(f"{self.config_name}: option train_signers={self.train_signers!r} is not a signer count")
        self.clip_list = self.option("clip_list")
        default_name = "{class_dir}/{stem}" if self.clip_list else "{name}"
        self.pose_name = PoseNameTemplate(self.option("pose_name", default_name), _TEMPLATE_FIELDS, self.config_name)
        dictionary = self.option("dictionary", "dictionary.txt")
        self.vocabulary = read_vocabulary(self.annotation_file(str(dictionary))) if dictionary else None

    # ------------------------------------------------------------------------------------------- enumeration

    def pose_suffix(self) -> str:
        return POSE_SUFFIXES.get(self.config.poses.format) or str(self.option("pose_suffix", ".pose"))

    def clip_names(self) -> list[str]:
        """Every clip's name (its path without suffix, or a collection key), sorted."""
        if self.clip_list:
            lines = self.read_text(self.annotation_file(str(self.clip_list))).splitlines()
            names = []
            for line in lines:
                path = PurePosixPath(line.strip().replace("\\", "/"))
                if line.strip():
                    names.append(str(path.with_suffix("")) if path.suffix.lower() in _VIDEO_SUFFIXES else str(path))
            return sorted(names)
        root = Path(self.config.poses.root)
        if self.config.poses.format == "pickle":
            try:
                collection = read_pickle_collection(root, allow_pickle=self.config.poses.allow_pickle)
            except PoseFormatError as exc:
                raise UserError(f"{self.config_name}: the clips are enumerated from {exc}") from None
            return sorted(str(key) for key in collection)
        if problem := folder_problem(root):
            raise UserError(f"{self.config_name}: pose root {root}: {problem} (the clips are enumerated from it; "
                            f"give option clip_list to enumerate them from a list instead)")
        suffix = self.pose_suffix()
        return sorted(p.relative_to(root).as_posix()[: -len(suffix)] for p in root.rglob(f"*{suffix}") if p.is_file())

    # --------------------------------------------------------------------------------------------- records

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        seen: set[str] = set()
        for name in self.clip_names():
            yield self._clip(name, seen)

    def _clip(self, name: str, seen: set[str]) -> CurationRecord | AnnotationReject:
        parts = PurePosixPath(name).parts
        stem = parts[-1] if parts else ""
        for suffix in _VIDEO_SUFFIXES:  # collection keys may keep the video's name
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
        class_dir = parts[-2] if len(parts) >= 2 else ""
        signer_match = _SIGNER.match(stem)
        if not _CLASS_DIR.match(class_dir) or signer_match is None:
            return self.reject("", name, "unparsable_name",
                               f"{name!r}: expected <6-digit class folder>/P<signer>_…")
        label, signer_number = int(class_dir), int(signer_match.group(1))
        split = "train" if signer_number <= self.train_signers else "test"
        source_id = f"{class_dir}/{stem}"
        if source_id in seen:
            return self.reject(split, source_id, "duplicate_id", f"{name!r}: clip {source_id} appears earlier")
        seen.add(source_id)
        signer = f"P{signer_number:02d}"
        fields = dict(name=name, class_dir=class_dir, stem=stem, label=label, signer=signer, split=split)
        pose_stem = self.pose_name.format(fields)
        if self.vocabulary is None:
            return self.record(split, source_id, pose_stem, signer=signer, label=label)
        if label not in self.vocabulary:
            return self.reject(split, source_id, "unknown_label",
                               f"{name!r}: label {label} is not in the dictionary ({len(self.vocabulary)} words)")
        gloss = self.vocabulary[label]
        return self.record(split, source_id, pose_stem, signer=signer, label=label, gloss=gloss,
                           text=isolated_sentence(gloss, self.text_language), paired=True)

