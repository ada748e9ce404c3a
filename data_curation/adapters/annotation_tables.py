"""Reading helpers shared by the sentence-level adapters (Phoenix14, Phoenix14-T, CSL-Daily, How2Sign, BOBSL):
delimited annotation tables with a header row, the annotation file of each split, duplicate-id tracking, and
:class:`SplitTableAdapter`, the adapter of datasets with one table per split and one clip a row.

Rules, each a decision:

- Files are read as UTF-8 (a BOM is dropped); bytes that are not UTF-8 become U+FFFD instead of stopping the
  run, and the pipeline rejects a paired text holding one as ``undecodable_text``.
- Tables are read with :mod:`csv` (``newline=""``), so LF and CRLF files read alike; columns are found by
  their header names, so their order does not matter. Every value is stripped of surrounding whitespace
  (no column of these datasets gives meaning to it: Phoenix annotations have stray leading / trailing
  spaces). Blank lines are skipped. A row whose field count differs from the header's, a quoted row spanning
  several lines (an unclosed quote swallows the lines after it: the detail names the span) and a row the
  :mod:`csv` module cannot read are a :class:`TableProblem`, which the adapter rejects as ``malformed_row``.
  A header lacking a required column is an error naming the file, since no row of such a file can be read.
- A split's annotation file that is missing is an error when the config selects that split (it is in
  ``splits`` and not in ``exclude_splits``); otherwise it is skipped with a log line, so a partial copy of
  a dataset (say, no test file) can still be curated.
"""

from __future__ import annotations

import csv
import logging
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_curation.adapters.base import DatasetAdapter
from data_curation.records import AnnotationReject, CurationRecord

logger = logging.getLogger(__name__)


@dataclass
class TableRow:
    line: int  # 1-based line of the file where the row ends
    values: dict[str, str]  # header name → stripped value


@dataclass
class TableProblem:
    line: int
    header: list[str]
    fields: list[str]  # the raw fields, so the adapter can still name the sample when the first ones are sound
    detail: str

    def value(self, column: str) -> str:
        """The stripped field at ``column``'s header position ("" when the row is too short for it)."""
        position = self.header.index(column)
        return self.fields[position].strip() if position < len(self.fields) else ""


def read_table(path: Path, delimiter: str, required: tuple[str, ...],
               quoting: int = csv.QUOTE_NONE) -> Iterator[TableRow | TableProblem]:
    """The rows of a delimited file with a header. ``QUOTE_NONE`` (the default) keeps quote characters as
    text, as the Phoenix and CSL-Daily tables need; How2Sign's CSV-quoted sentences take ``QUOTE_MINIMAL``."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError(f"{path}: header {delimiter.join(header)!r} lacks the column(s) {missing}")
        while True:
            first_line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field past csv's size limit after an unclosed quote
                yield TableProblem(reader.line_num, header, [], f"{path}:{first_line}-{reader.line_num}: {exc}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            raw = delimiter.join(fields)
            if reader.line_num != first_line:  # only an unclosed quote makes a row span lines in these tables
                yield TableProblem(reader.line_num, header, fields, f"{path}:{first_line}-{reader.line_num}: one row "
                                   f"spans {reader.line_num - first_line + 1} lines (unclosed quote?) ({raw[:120]!r})")
                continue
            if len(fields) != len(header):
                yield TableProblem(reader.line_num, header, fields, f"{path}:{reader.line_num}: {len(fields)} fields, "
                                   f"expected {len(header)} ({raw[:120]!r})")
                continue
            yield TableRow(reader.line_num, {name: value.strip() for name, value in zip(header, fields)})


def split_annotation_files(adapter: DatasetAdapter, file_of_split: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """(split, path) of each split's annotation file, in the order given; see the module rule on missing files."""
    config = adapter.config
    for split, relative in file_of_split.items():
        path = adapter.root / relative
        if path.is_file():
            yield split, path
        elif split in config.splits and split not in config.exclude_splits:
            adapter.annotation_file(relative)  # raises, naming the file and the annotation root
        else:
            logger.info("%s: no %s annotation file %s; the split is not selected, skipping it", adapter.name, split,
                        path)


class FirstSeen:
    """Where each id was first seen, so a later occurrence is rejected naming the first."""

    def __init__(self) -> None:
        self._where: dict[str, str] = {}

    def earlier(self, source_id: str, where: str) -> str | None:
        """None the first time ``source_id`` is seen (and remember ``where``), else where it was seen first."""
        first = self._where.setdefault(source_id, where)
        return None if first == where else first


class SplitTableAdapter(DatasetAdapter):
    """An adapter reading one delimited table per split, one clip a row (Phoenix14, Phoenix14-T, How2Sign).

    Subclasses give the files, the columns and :meth:`row_record`; this loop rejects malformed rows
    (``malformed_row``), empty ids (``missing_id``) and ids seen before in any split (``duplicate_id``, naming
    the first row), in every split's file.
    """

    delimiter = "|"
    quoting = csv.QUOTE_NONE
    id_column = ""

    @abstractmethod
    def split_files(self) -> dict[str, str]:
        """train / dev / test → the annotation file of that split."""

    @abstractmethod
    def required_columns(self) -> tuple[str, ...]:
        """Header columns a table must have (a missing one is an error naming the file)."""

    @abstractmethod
    def row_record(self, split: str, source_id: str, values: dict[str, str],
                   where: str) -> CurationRecord | AnnotationReject:
        """The record (or reject) of one well-formed row; ``where`` names the file and line."""

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        seen = FirstSeen()
        for split, path in split_annotation_files(self, self.split_files()):
            for row in read_table(path, self.delimiter, self.required_columns(), self.quoting):
                line_id = f"{path.name}:{row.line}"
                if isinstance(row, TableProblem):
                    yield self.reject(split, row.value(self.id_column) or line_id, "malformed_row", row.detail)
                    continue
                where = f"{path}:{row.line}"
                source_id = row.values[self.id_column]
                if not source_id:
                    yield self.reject(split, line_id, "missing_id", f"{where}: empty {self.id_column}")
                    continue
                first = seen.earlier(source_id, where)
                if first is not None:
                    yield self.reject(split, source_id, "duplicate_id", f"{where}: {source_id} already at {first}")
                    continue
                yield self.row_record(split, source_id, row.values, where)
