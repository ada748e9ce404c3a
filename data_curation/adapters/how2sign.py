"""How2Sign (American Sign Language → English): sentence-level sign-text pairs from the re-aligned CSVs.

Annotation files (``annotation_root`` = the folder of the official CSVs): ``how2sign_realigned_train.csv``,
``how2sign_realigned_val.csv``, ``how2sign_realigned_test.csv`` (val → dev) — TAB-separated with CSV quoting
(a sentence holding ``"`` is quoted, its quotes doubled), CRLF, header
``VIDEO_ID VIDEO_NAME SENTENCE_ID SENTENCE_NAME START_REALIGNED END_REALIGNED SENTENCE``. They are read with
:mod:`csv` (delimiter TAB, default quoting): splitting lines on TAB would keep the quoting in the text. Ids
may begin with ``-`` or ``_`` (YouTube ids); they are plain strings here.

Poses, option ``pose_layout``:

- ``video`` (default): one sequence per full video, ``<pose root>/<VIDEO_NAME><suffix>`` (or the key
  ``VIDEO_NAME`` of a pickle collection); the clip is ``START_REALIGNED``–``END_REALIGNED`` (seconds,
  relative to that video), given as ``time_start`` / ``time_end`` and cut by the pipeline with the pose's fps;
- ``clip``: one sequence per sentence clip (the release's ``clips/<SENTENCE_NAME>.mp4`` run through a pose
  estimator), ``<pose root>/<SENTENCE_NAME><suffix>``; the whole sequence is the clip and the times are not
  used (nor checked).

Derived fields: source id = ``SENTENCE_NAME`` (the clip's file stem; unique); text = ``SENTENCE``; no signer
(the CSVs carry none) and no glosses. Mojibake rule: some sentences hold UTF-8 that was decoded as Latin-1 /
Windows-1252 and encoded again (``â\\x80\\x99`` for ``’``). Every run that has the exact shape of one
double-encoded character — a UTF-8 lead byte U+00C2–U+00F4 followed by the number of continuation bytes it
announces, each U+0080–U+00BF or its Windows-1252 stand-in (``€``, ``™``…) — is mapped back to its bytes
and decoded as UTF-8; a run that does not decode strictly is left as it is. This is reversible and leaves
correct text alone (a real ``é`` is not followed by continuation characters), so it repairs rather than
rejects.

Rejects (all in the row's split): ``malformed_row`` (wrong field count, or a quote left open at the end of its
line — the rows after it are still read), ``missing_id``, ``duplicate_id``
(same SENTENCE_NAME again, naming the first row), ``empty_text``; in the ``video`` layout also ``bad_time``
(a time that is not a finite number), ``zero_length_cue`` (end = start) and ``reversed_cue`` (end < start) —
a re-aligned sentence is a subtitle cue, so BOBSL's reason names are used. A cue beyond the end of the video is
the pipeline's ``frame_range_outside``.
"""

from __future__ import annotations

import csv
import math
import re

from data_curation.adapters.annotation_tables import SplitTableAdapter
from data_curation.adapters.base import register_adapter
from data_curation.config import DatasetConfig
from data_curation.records import AnnotationReject, CurationRecord

SPLIT_FILES = {"train": "how2sign_realigned_train.csv", "dev": "how2sign_realigned_val.csv",
               "test": "how2sign_realigned_test.csv"}
COLUMNS = ("VIDEO_NAME", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED", "SENTENCE")
POSE_LAYOUTS = ("video", "clip")

# Windows-1252 characters standing for the bytes 0x80-0x9F (Latin-1 maps those bytes to C1 controls).
_CP1252_HIGH = {bytes([b]).decode("cp1252"): b for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_CONTINUATION = "[\u0080-\u00bf" + "".join(_CP1252_HIGH) + "]"
_DOUBLE_ENCODED = re.compile(f"[\u00c2-\u00df]{_CONTINUATION}|[\u00e0-\u00ef]{_CONTINUATION}{{2}}"
                             f"|[\u00f0-\u00f4]{_CONTINUATION}{{3}}")


def repair_double_encoded_utf8(text: str) -> str:
    """Undo UTF-8 text decoded as Latin-1 / Windows-1252 and re-encoded (``horseâ\\x80\\x99s`` → ``horse’s``)."""

    def decode(match: re.Match) -> str:
        raw = bytes(_CP1252_HIGH.get(c, ord(c)) for c in match.group())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return match.group()

    return _DOUBLE_ENCODED.sub(decode, text)


@register_adapter
class How2SignAdapter(SplitTableAdapter):
    name = "how2sign"
    sign_language = "ASL"
    text_language = "en"
    source_kind = "lab"
    delimiter, quoting, id_column = "\t", csv.QUOTE_MINIMAL, "SENTENCE_NAME"

    def __init__(self, config: DatasetConfig, config_name: str = ""):
        super().__init__(config, config_name)
        self.pose_layout = self.choice_option("pose_layout", "video", POSE_LAYOUTS)

    def split_files(self) -> dict[str, str]:
        return SPLIT_FILES

    def required_columns(self) -> tuple[str, ...]:
        return COLUMNS

    def row_record(self, split: str, source_id: str, values: dict[str, str],
                   where: str) -> CurationRecord | AnnotationReject:
        text = repair_double_encoded_utf8(values["SENTENCE"])
        if not text:
            return self.reject(split, source_id, "empty_text", f"{where}: empty SENTENCE")
        if self.pose_layout == "clip":
            return self.record(split, source_id, source_id, text=text, gloss=[], paired=True)
        try:
            start, end = float(values["START_REALIGNED"]), float(values["END_REALIGNED"])
        except ValueError:
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)):
            return self.reject(split, source_id, "bad_time", f"{where}: START_REALIGNED="
                               f"{values['START_REALIGNED']!r}, END_REALIGNED={values['END_REALIGNED']!r}")
        if end <= start:
            reason = "zero_length_cue" if end == start else "reversed_cue"
            return self.reject(split, source_id, reason, f"{where}: {start} → {end} s")
        return self.record(split, source_id, values["VIDEO_NAME"], time_start=start, time_end=end, text=text,
                           gloss=[], paired=True)

