"""CSL-Daily (Chinese Sign Language → Chinese): sentence-level sign-text pairs.

Annotation files (``annotation_root`` = the release's ``sentence_label/``; names are options):

- ``split_1.txt`` (option ``split_file``): header ``name|split``, then ``S000000_P0000_T00|train``… (20,654
  rows: train 18,401 / dev 1,077 / test 1,176; no trailing newline);
- ``video_map.txt`` (option ``label_file``): header ``index|name|length|gloss|char|word|postag``, UTF-8;
  ``gloss`` space-separated CSL glosses, ``char`` the sentence one character (or punctuation mark) a token,
  ``word`` the same sentence segmented into words.

Poses: ``<pose root>/<name><suffix>`` (the release keeps all videos in one folder, ``sentence/frames_512x512/
<name>/``), or the key ``<name>`` of a pickle collection; the whole sequence is the clip.

Derived fields: split from ``split_1.txt``; ``signer`` = the ``P<4 digits>`` part of the name
(``S<sentence>_P<signer>_T<take>``; "" when the name has another form); gloss sequence = ``gloss`` split on
whitespace. Text = the ``char`` column (option ``text_column: word`` takes ``word``) with its separating
spaces removed: Chinese is written without spaces, so joining gives the natural sentence (both columns
give the same one) that the text encoder's own tokenizer expects, and the GF-SLT scores split it per
character again. ``length`` (the video's frame count) is the clip's expected length, which the pipeline checks
against the pose; ``postag`` is not used.

Join of the two files, each entry accounted for once:

- a label row whose name has no split row, or whose split row holds an unknown split name, cannot be
  placed in a split — and curating it could leak a test sample into pre-training — so it is yielded as a
  reject (``no_split_entry`` / ``unknown_split``) with the split ``unsplit``: it is logged and lands in
  ``rejects.parquet`` (the pipeline logs annotation rejects whatever their split), counted under
  ``by_dataset.csl_daily.unsplit`` of the build summary. (The real release has such rows:
  ``S000007_P0003_T00`` is in ``video_map.txt`` only.)
- a split row without a label row (no text, no glosses) is rejected in its split as ``no_label_row``, after
  all label rows, in split-file order.
- a second split row of a name is rejected as ``duplicate_id`` (the first one's split stands); a second label
  row too. Malformed rows of either file are ``malformed_row``; an empty sentence is ``empty_text``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from data_curation.adapters.annotation_tables import FirstSeen, TableProblem, read_table
from data_curation.adapters.base import DatasetAdapter, normalise_split, register_adapter
from data_curation.config import DatasetConfig
from data_curation.records import AnnotationReject, CurationRecord

logger = logging.getLogger(__name__)

#: Split of the rejects that cannot be placed in train / dev / test (never selected by a config).
UNSPLIT = "unsplit"
TEXT_COLUMNS = ("char", "word")
SIGNER = re.compile(r"^S\d+_(P\d+)_T\d+$")


@dataclass
class SplitEntry:
    split: str | None  # None: the row's split name is unknown
    raw_split: str
    where: str


@register_adapter
class CslDailyAdapter(DatasetAdapter):
    name = "csl_daily"
    sign_language = "CSL"
    text_language = "zh"
    source_kind = "lab"

    def __init__(self, config: DatasetConfig, config_name: str = ""):
        super().__init__(config, config_name)
        self.text_column = self.choice_option("text_column", "char", TEXT_COLUMNS)

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        split_path = self.annotation_file(self.option("split_file", "split_1.txt"))
        label_path = self.annotation_file(self.option("label_file", "video_map.txt"))
        entries: dict[str, SplitEntry] = {}
        for row in read_table(split_path, "|", ("name", "split")):
            if isinstance(row, TableProblem):
                yield self.unsplit(row.fields[0].strip() or f"{split_path.name}:{row.line}", "malformed_row",
                                   row.detail)
                continue
            name, where = row.values["name"], f"{split_path}:{row.line}"
            entry = SplitEntry(normalise_split(row.values["split"]), row.values["split"], where)
            if name in entries:
                first = entries[name]
                yield self.reject(entry.split or UNSPLIT, name, "duplicate_id",
                                  f"{where}: {name} ({entry.raw_split}) already at {first.where} ({first.raw_split})")
                continue
            entries[name] = entry

        joined: set[str] = set()
        seen = FirstSeen()
        for row in read_table(label_path, "|", ("name", "gloss", "char", "word")):
            if isinstance(row, TableProblem):
                name = row.fields[1].strip() if len(row.fields) > 1 else ""
                entry = entries.get(name)
                if entry is not None and entry.split is not None:
                    joined.add(name)
                    yield self.reject(entry.split, name, "malformed_row", row.detail)
                else:
                    yield self.unsplit(name or f"{label_path.name}:{row.line}", "malformed_row", row.detail)
                continue
            name, where = row.values["name"], f"{label_path}:{row.line}"
            entry = entries.get(name)
            first = seen.earlier(name, where)
            if first is not None:
                split = entry.split if entry is not None and entry.split is not None else UNSPLIT
                yield self.reject(split, name, "duplicate_id", f"{where}: {name} already at {first}")
                continue
            if entry is None:
                yield self.unsplit(name, "no_split_entry", f"{where}: {name} has no row in {split_path.name}")
                continue
            joined.add(name)
            if entry.split is None:
                yield self.unsplit(name, "unknown_split", f"{entry.where}: unknown split {entry.raw_split!r}")
                continue
            yield self.label_record(entry.split, name, row.values, where)

        for name, entry in entries.items():
            if name in joined:
                continue
            if entry.split is None:
                yield self.unsplit(name, "unknown_split", f"{entry.where}: unknown split {entry.raw_split!r}")
            else:
                yield self.reject(entry.split, name, "no_label_row",
                                  f"{entry.where}: {name} has no row in {label_path.name}")

    def label_record(self, split: str, name: str, values: dict[str, str],
                     where: str) -> CurationRecord | AnnotationReject:
        text = "".join(values[self.text_column].split())
        if not text:
            return self.reject(split, name, "empty_text", f"{where}: empty {self.text_column}")
        signer = SIGNER.match(name)
        length = values.get("length", "")
        return self.record(split, name, name, signer=signer.group(1) if signer else "", text=text,
                           gloss=values["gloss"].split(), paired=True,
                           annotated_frames=int(length) if length.isascii() and length.isdigit() else 0)

    def unsplit(self, name: str, reason: str, detail: str) -> AnnotationReject:
        logger.info("%s: %s not curated (%s): %s", self.config_name, name, reason, detail)
        return self.reject(UNSPLIT, name, reason, detail)

