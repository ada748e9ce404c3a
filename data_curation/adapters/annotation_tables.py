"""Reading helpers shared by the sentence-level adapters (Phoenix14, Phoenix14-T, CSL-Daily, How2Sign, BOBSL):
delimited annotation tables with a header row, the annotation file of each split, duplicate-id tracking, and
:class:`SplitTableAdapter`, the adapter of datasets with one table per split and one clip a row.

Rules, each a decision:

- Files are read as UTF-8 (a BOM is dropped); bytes that are not UTF-8 become U+FFFD instead of stopping the
  run, and the pipeline rejects a paired text holding one as ``undecodable_text``.
- Tables are read line by line, each line with :mod:`csv`, so LF and CRLF files read alike; columns are found by
  their header names, so their order does not matter. Every value is stripped of surrounding whitespace
  (no column of these datasets gives meaning to it: Phoenix annotations have stray leading / trailing
  spaces). Blank lines are skipped. No row of these tables spans lines, so a quoted field left open at the end
  of its line is an unclosed quote: that row is a :class:`TableProblem` and the lines after it are read as
  the rows they are (read as one CSV stream, the quote would swallow every line up to the next quote
  character). A row whose field count differs from the header's and a row the :mod:`csv` module cannot read
  are :class:`TableProblem` too; the adapter rejects each as ``malformed_row``. A header lacking a required
  column is an error naming the file, since no row of such a file can be read.
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
from slp.cli_errors import UserError

logger = logging.getLogger(__name__)


@dataclass
class TableRow:
    line: int  # 1-based line of the file
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

    def parse(line: str) -> list[str]:
        # The line ending is kept (and added to a last line without one), so a quote still open at the end of the
        # line leaves a line break inside its field: that is how an unclosed quote shows.
        return next(csv.reader([line if line.endswith(("\n", "\r")) else line + "\n"], delimiter=delimiter,
                               quoting=quoting))

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = enumerate(f, start=1)
        header = [name.strip() for name in parse(next(lines, (0, ""))[1])]
        missing = [name for name in required if name not in header]
        if missing:
            raise UserError(f"{path}: header {delimiter.join(header)!r} lacks the column(s) {missing}")
        for number, line in lines:
            if not line.strip():
                continue
            raw = line.rstrip("\r\n")
            try:
                fields = parse(line)
            except csv.Error as exc:  # e.g. a field past csv's size limit
                yield TableProblem(number, header, raw.split(delimiter), f"{path}:{number}: {exc} ({raw[:120]!r})")
                continue
            if any("\n" in field or "\r" in field for field in fields):
                yield TableProblem(number, header, raw.split(delimiter),
                                   f"{path}:{number}: unclosed quote ({raw[:120]!r})")
                continue
            if len(fields) != len(header):
                yield TableProblem(number, header, fields, f"{path}:{number}: {len(fields)} fields, "
                                   f"expected {len(header)} ({raw[:120]!r})")
                continue
            yield TableRow(number, {name: value.strip() for name, value in zip(header, fields)})


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
