"""ASL Signs (Kaggle "Google - Isolated Sign Language Recognition", 2023): American Sign Language, 250 signs by 21
signers, 94,477 clips filmed on phones and released as MediaPipe Holistic landmarks only (no video).

Files read (``annotation_root`` = the release root):

- ``train.csv``: ``path,participant_id,sequence_id,sign`` (comma-separated, a header row; columns found by name);
  ``path`` is the clip's landmark file relative to the release root,
  ``train_landmark_files/<participant_id>/<sequence_id>.parquet``;
- option ``sign_map`` (default ``sign_to_prediction_index_map.json``; ``null`` for none): the release's JSON
  object sign → class index, the samples' labels. The default file may be absent (partial copies lack it): the
  labels are then -1 and the gloss names the class; a file the option names must exist. Without labels, ISLR
  fine-tuning cannot use the samples and ``slp-curate audit`` compares their template sentences across splits;
- the landmark files, one Parquet per clip (one row per landmark per frame: ``frame``, ``row_id``, ``type``,
  ``landmark_index``, ``x``, ``y``, ``z``), read by the pose format ``asl_signs_parquet``
  (:func:`slp.pose.readers.read_asl_signs_parquet`: MediaPipe Holistic 543 → COCO-WholeBody 133 by
  :mod:`slp.pose.convert`'s mapping, NaN → missing point, skipped frame numbers kept as frames without
  detections). ``poses.root`` is the release root too (the CSV's paths start there); ``poses.format`` is
  ``asl_signs_parquet``, or ``auto`` (by the ``.parquet`` suffix). Any other format is an error.

Derived fields: source id = ``sequence_id`` (unique in the release); signer = ``participant_id``; gloss = ``sign``;
label = the sign's index in the sign map; text = the English ISLR template ("This word is hello."); paired.

Frame size and rate: the release records neither. x and y are fractions of the frame; the pipeline's pixels are
fraction × size, and shards keep pixel / size, so the shards hold the release's own fractions whatever the size:
only the aspect ratio matters (the loader's hand crops are square in pixels, :mod:`slp.pose.normalize`). The
size is ``poses.width`` × ``poses.height`` when the config gives them (both or neither), else
:data:`DEFAULT_FRAME_SIZE`, a 3:4 portrait frame: the aspect ratio at which the face meshes of real clips
(``../shared/realdata/asl_signs``) keep their proportions and their hand bones their lengths best (height / width
1.25-1.4). The fps is ``poses.fps`` (default 25; it only sets the clips' durations).

Splits: the release has ``train.csv`` only (the competition's test set was never published). Options
``dev_participants`` and ``test_participants`` (lists of participant ids, default empty) hold those signers out
as dev / test; every other clip is train, so by default the whole release is train. A participant in both
lists, or one that ``train.csv`` does not have (a typo would leave that signer in train), is an error naming it.

Rejects: ``malformed_row`` (a wrong field count or an unclosed quote, a participant_id or sequence_id that is
not a whole number, an empty path), ``duplicate_id`` (a sequence_id seen before, naming its first row),
``empty_gloss`` (an empty sign), ``unknown_label`` (a sign the sign map lacks). A landmark file's problems are
the pipeline's rejects: ``missing_pose_file`` (no such file), ``unreadable_pose`` (truncated or not Parquet, a
column of the wrong type, a landmark with two rows, frame numbers of a corrupt file), ``unsupported_layout``
(columns lacking, a ``type`` other than face / left_hand / pose / right_hand, a ``landmark_index`` outside its
part), ``unsupported_dtype`` (coordinates that are not numbers), ``no_detections`` (every value NaN). A header
lacking a column, or a sign map that is not a JSON object of sign → index, stops the build with an error naming
the file.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from typing import Any

from data_curation.adapters.annotation_tables import FirstSeen, TableProblem, read_table
from data_curation.adapters.base import DatasetAdapter, isolated_sentence, register_adapter
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError
from slp.config import is_int

logger = logging.getLogger(__name__)

CSV_FILE = "train.csv"
COLUMNS = ("path", "participant_id", "sequence_id", "sign")
DEFAULT_SIGN_MAP = "sign_to_prediction_index_map.json"
#: (width, height) of the frame the landmarks' fractions are scaled to when the config gives none (see above).
DEFAULT_FRAME_SIZE = (480, 640)
POSE_FORMATS = ("asl_signs_parquet", "auto")
_WHOLE_NUMBER = re.compile(r"^\d+$")


@register_adapter
class ASLSignsAdapter(DatasetAdapter):
    name = "asl_signs"
    sign_language = "ASL"
    text_language = "en"
    source_kind = "lab"  # recorded for the dataset: 21 signers prompted sign by sign, each in front of a phone

    def __init__(self, config, config_name: str = ""):
        super().__init__(config, config_name)
        poses = config.poses
        if poses.format not in POSE_FORMATS:
            raise UserError(f"{self.config_name}: poses.format {poses.format!r}; the release's landmark files are "
                            f"read as {' or '.join(POSE_FORMATS)}")
        if bool(poses.width) != bool(poses.height):
            raise UserError(f"{self.config_name}: poses.width {poses.width} and poses.height {poses.height}: give "
                            f"both or neither (default {DEFAULT_FRAME_SIZE[0]} x {DEFAULT_FRAME_SIZE[1]})")
        self.width, self.height = (poses.width, poses.height) if poses.width else DEFAULT_FRAME_SIZE
        dev, test = (self._participants(key) for key in ("dev_participants", "test_participants"))
        if both := sorted(dev & test):
            raise UserError(f"{self.config_name}: participant(s) {both} in both dev_participants and "
                            f"test_participants")
        self.held_out = {**dict.fromkeys(dev, "dev"), **dict.fromkeys(test, "test")}
        self.labels = self._sign_map()

    def _participants(self, key: str) -> set[str]:
        values = self.option(key, [])
        if not isinstance(values, list) or not all(is_int(v) or isinstance(v, str) for v in values):
            raise UserError(f"{self.config_name}: option {key}={values!r} is not a list of participant ids")
        return {str(v).strip() for v in values}

    def _sign_map(self) -> dict[str, int] | None:
        """Sign → label from the sign map, None when the default file is absent (see the module docstring)."""
        relative = self.option("sign_map", DEFAULT_SIGN_MAP)
        if not relative:
            return None
        if relative == DEFAULT_SIGN_MAP and not (self.root / DEFAULT_SIGN_MAP).exists():
            logger.info("%s: no %s under %s: the samples have no labels", self.config_name, DEFAULT_SIGN_MAP,
                        self.root)
            return None
        path = self.annotation_file(str(relative))
        signs = self.read_json(path)
        if not (isinstance(signs, dict) and all(is_int(v) and v >= 0 for v in signs.values())):
            raise UserError(f"{self.config_name}: {path} is not a JSON object of sign → class index (>= 0)")
        return signs

    def _check_held_out(self, path) -> None:
        """Every held-out participant appears in the CSV (a first pass over it: it is read twice, never held)."""
        if not self.held_out:
            return
        present = {row.values["participant_id"] for row in read_table(path, ",", COLUMNS, csv.QUOTE_MINIMAL)
                   if not isinstance(row, TableProblem)}
        absent = sorted(set(self.held_out) - present)
        if absent:
            raise UserError(f"{self.config_name}: option dev_participants / test_participants names participant(s) "
                            f"{absent} that {path} does not have")

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        path = self.annotation_file(CSV_FILE)
        self._check_held_out(path)
        seen = FirstSeen()
        for row in read_table(path, ",", COLUMNS, csv.QUOTE_MINIMAL):
            if isinstance(row, TableProblem):
                split = self.held_out.get(row.value("participant_id"), "train")
                yield self.reject(split, row.value("sequence_id") or f"{CSV_FILE}:{row.line}", "malformed_row",
                                  row.detail)
                continue
            yield self._clip(row.values, f"{path}:{row.line}", f"{CSV_FILE}:{row.line}", seen)

    def _clip(self, values: dict[str, str], where: str, line_id: str,
              seen: FirstSeen) -> CurationRecord | AnnotationReject:
        participant, sequence, sign, pose_path = (values[c] for c in ("participant_id", "sequence_id", "sign", "path"))
        split = self.held_out.get(participant, "train")
        source_id = sequence or line_id
        if not (_WHOLE_NUMBER.match(participant) and _WHOLE_NUMBER.match(sequence) and pose_path):
            return self.reject(split, source_id, "malformed_row", f"{where}: participant_id {participant!r}, "
                               f"sequence_id {sequence!r}, path {pose_path!r}")
        first = seen.earlier(sequence, where)
        if first is not None:
            return self.reject(split, sequence, "duplicate_id", f"{where}: sequence_id {sequence} already at {first}")
        if not sign:
            return self.reject(split, sequence, "empty_gloss", f"{where}: empty sign")
        label = -1
        if self.labels is not None:
            if sign not in self.labels:
                return self.reject(split, sequence, "unknown_label",
                                   f"{where}: sign {sign!r} is not in the sign map ({len(self.labels)} signs)")
            label = self.labels[sign]
        fields: dict[str, Any] = dict(signer=participant, gloss=sign, label=label, paired=True,
                                      text=isolated_sentence(sign, self.text_language), width=self.width,
                                      height=self.height)
        return self.record(split, sequence, pose_path, pose_path=pose_path, **fields)
