"""BOBSL (BBC-Oxford British Sign Language → English): episodes cut into sign-text pairs by subtitle cues.

Annotation files (``annotation_root`` = the release folder):

- episode split lists, one episode id a line (19-digit numbers, no trailing newline), option ``split_lists``
  (split → file; default ``{train: bobsl_align_train.txt, dev: bobsl_align_val.txt, test:
  bobsl_align_test.txt}``, the episodes with manually aligned subtitles; split names are normalised, so
  ``val`` means dev). Ids are kept as the exact strings
  of the file: they exceed 2^53, so any float coercion would corrupt them. Blank lines and surrounding
  whitespace are ignored; a line holding whitespace inside is ``malformed_episode_id``; an episode listed a
  second time (same or another list) is ``duplicate_episode`` (its first split stands);
- one WebVTT file per episode, ``<subtitle_dir>/<episode>.vtt`` (option ``subtitle_dir``, default
  ``subtitles/manually-aligned``; ``subtitles/audio-aligned`` is the other official set). A missing file is
  one ``missing_subtitle_file`` reject for the episode, a file not starting with ``WEBVTT`` one
  ``not_webvtt``.

Poses: one sequence per episode, ``<pose root>/<episode><suffix>`` (or the key ``<episode>`` of a pickle
collection); each cue is a record with ``time_start`` / ``time_end`` in seconds on it, cut by the pipeline
with the pose's fps (a cue past the end of the episode is ``frame_range_outside`` there).

Records: source id ``<episode>_<n>`` with n the cue's 0-based position among the file's cue blocks (stable:
rejected cues keep their numbers); text = the cue text; no signer, no glosses.

WebVTT rules (:func:`parse_webvtt`): the ``WEBVTT`` header block and ``NOTE`` / ``STYLE`` / ``REGION`` blocks
are skipped; blocks are separated by blank lines; a cue identifier line before the timing line is tolerated
(and ignored); timestamps are ``[HH:]MM:SS.mmm`` (a comma for the dot, as in SRT, is accepted); cue settings
after the end time (``align:start line:90%``) are ignored; text lines are joined with one space, tags
(``<i>``, ``<c.yellow>``, ``<v Name>``, ``<00:01.000>``) removed, entities (``&amp;``) decoded, runs of
whitespace collapsed. CRLF and LF files read alike. A block with no timing line or a timing line that does
not parse is ``malformed_cue``, and so is a cue inside the header block (no blank line after ``WEBVTT``).

Cue rules (subtitles aligned to signing by a model, such as BOBSL's, contain all of these):

- zero-length cue (end = start): ``zero_length_cue`` — it holds no frame;
- reversed cue (end < start): ``reversed_cue`` — the alignment failed, and neither bound can be trusted;
- cue overlapping the previous one: KEPT as it is. Each record is an independent clip, so frames shared by
  two clips are harmless, while trimming would cut signs the aligner placed in the cue (consecutive
  sentences are co-articulated, so overlaps are expected);
- cue starting before the previous one (out of order): KEPT, for the same reason: order does not matter to
  independent clips; records come out in file order;
- cue whose text is empty once tags are removed: ``empty_text``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_curation.adapters.annotation_tables import split_annotation_files
from data_curation.adapters.base import DatasetAdapter, normalise_split, register_adapter
from data_curation.config import DatasetConfig
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError, file_problem

DEFAULT_SPLIT_LISTS = {"train": "bobsl_align_train.txt", "dev": "bobsl_align_val.txt",
                       "test": "bobsl_align_test.txt"}
DEFAULT_SUBTITLE_DIR = "subtitles/manually-aligned"

_TIMESTAMP = r"(?:(\d+):)?(\d{2}):(\d{2})[.,](\d{3})"
_TIMING = re.compile(rf"^\s*{_TIMESTAMP}\s*-->\s*{_TIMESTAMP}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>")
_SKIPPED_BLOCKS = re.compile(r"^(NOTE|STYLE|REGION)(\s|$)")


@dataclass
class Cue:
    index: int  # 0-based position among the file's cue blocks
    line: int  # 1-based line of the timing line
    start: float  # seconds
    end: float
    text: str


@dataclass
class CueProblem:
    index: int
    line: int
    detail: str


class WebVTTError(ValueError):
    """A file that is not WebVTT at all."""


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def cue_text(lines: list[str]) -> str:
    """Cue text lines → one line: tags removed, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(_TAG.sub("", " ".join(lines))).split())


def parse_webvtt(text: str, source: str = "") -> list[Cue | CueProblem]:
    """The cues of a WebVTT document in file order, malformed ones as :class:`CueProblem` (see the module
    rules); :class:`WebVTTError` when it does not start with ``WEBVTT``."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not re.match(r"^WEBVTT(\s|$)", lines[0]):
        raise WebVTTError(f"{source}: first line {lines[0][:40]!r} is not 'WEBVTT'")
    blocks: list[tuple[int, list[str]]] = []  # (1-based first line, lines)
    current: list[str] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if not current:
                blocks.append((number, current))
            current.append(line)
        else:
            current = []
    items: list[Cue | CueProblem] = []
    header_line, header = blocks[0]
    if any("-->" in line for line in header):  # no blank line after the header: the spec makes that cue invalid
        items.append(CueProblem(0, header_line, f"{source}:{header_line}: cue inside the header block (no blank "
                                "line after WEBVTT)"))
    for first_line, block in blocks[1:]:
        if _SKIPPED_BLOCKS.match(block[0]):
            continue
        index = len(items)
        timing_at = next((i for i, line in enumerate(block[:2]) if "-->" in line), None)
        if timing_at is None:
            items.append(CueProblem(index, first_line, f"{source}:{first_line}: block without a timing line "
                                    f"({block[0][:60]!r})"))
            continue
        line = first_line + timing_at
        match = _TIMING.match(block[timing_at])
        if match is None:
            items.append(CueProblem(index, line, f"{source}:{line}: unreadable timing {block[timing_at][:60]!r}"))
            continue
        groups = match.groups()
        items.append(Cue(index, line, _seconds(*groups[:4]), _seconds(*groups[4:]), cue_text(block[timing_at + 1:])))
    return items


def read_episode_list(path: Path) -> Iterator[tuple[int, str]]:
    """(line, stripped line) of each non-blank line of an episode list; ids stay strings."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line.strip()


@register_adapter
class BobslAdapter(DatasetAdapter):
    name = "bobsl"
    sign_language = "BSL"
    text_language = "en"
    source_kind = "TV"

    def __init__(self, config: DatasetConfig, config_name: str = ""):
        super().__init__(config, config_name)
        lists = self.option("split_lists", DEFAULT_SPLIT_LISTS)
        if not isinstance(lists, dict):
            raise UserError(f"{self.config_name}: option split_lists must map split → list file, got {lists!r}")
        self.split_lists: dict[str, str] = {}
        for split, relative in lists.items():
            if not isinstance(split, str) or normalise_split(split) is None:
                raise UserError(f"{self.config_name}: option split_lists names the unknown split {split!r}")
            self.split_lists[normalise_split(split)] = relative

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        subtitle_dir = self.root / str(self.option("subtitle_dir", DEFAULT_SUBTITLE_DIR))
        listed: dict[str, str] = {}  # episode → where it was first listed
        for split, path in split_annotation_files(self, self.split_lists):
            for number, episode in read_episode_list(path):
                where = f"{path}:{number}"
                if len(episode.split()) > 1:
                    yield self.reject(split, episode, "malformed_episode_id", f"{where}: {episode[:60]!r}")
                    continue
                if episode in listed:
                    yield self.reject(split, episode, "duplicate_episode", f"{where}: already at {listed[episode]}")
                    continue
                listed[episode] = where
                yield from self.episode_records(split, episode, subtitle_dir / f"{episode}.vtt")

    def episode_records(self, split: str, episode: str, vtt: Path) -> Iterator[CurationRecord | AnnotationReject]:
        problem = file_problem(vtt)
        if problem is not None:
            yield self.reject(split, episode, "missing_subtitle_file", f"{vtt}: {problem}")
            return
        try:
            cues = parse_webvtt(vtt.read_text(encoding="utf-8", errors="replace"), str(vtt))
        except WebVTTError as exc:
            yield self.reject(split, episode, "not_webvtt", str(exc))
            return
        for cue in cues:
            source_id = f"{episode}_{cue.index:04d}"
            if isinstance(cue, CueProblem):
                yield self.reject(split, source_id, "malformed_cue", cue.detail)
            elif cue.end <= cue.start:
                reason = "zero_length_cue" if cue.end == cue.start else "reversed_cue"
                yield self.reject(split, source_id, reason, f"{vtt}:{cue.line}: {cue.start:.3f} → {cue.end:.3f} s")
            elif not cue.text:
                yield self.reject(split, source_id, "empty_text", f"{vtt}:{cue.line}: cue without text")
            else:
                yield self.record(split, source_id, episode, time_start=cue.start, time_end=cue.end, text=cue.text,
                                  gloss=[], paired=True)

