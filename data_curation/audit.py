"""``slp-curate audit``: what a curated build holds that would spoil pre-training or the evaluation after it.

:func:`audit_build` reads every shard of a build once (the validating reader,
:func:`slp.data.shards.iter_samples`, behind a progress bar), with the build's ``warnings.parquet``,
``rejects.parquet`` and ``summary.json`` where present; :func:`write_report` writes ``audit.json`` (counts and
offending keys) and ``audit.html`` (one self-contained file: inline SVG plots, no script, no network).

What pre-training reads is decided by the loader's own rule, :func:`slp.data.loader.selected`, under a
:class:`~slp.data.loader.PretrainDataConfig`: by default its defaults (the train splits), or a run's ``data:``
(``slp-curate audit --pretrain-config configs/pretrain/paper.yaml``: train and dev, benchmark tests excluded). A
(dataset, split) that pre-training does not read at all is *held out*; a held-out ``test`` split is an *excluded
test split*. A build whose curation config excluded the test splits (``exclude_splits``, as
``configs/curate/sl15m.yaml`` does) holds none: it cannot leak them, and the report says so.

Statistics, per dataset:

- missing parts: the fraction of frames in which every point of a part (:data:`slp.pose.layout.PART_NAMES`) has
  confidence 0, and of frames missing both hands;
- confidence histograms of the detected points (confidence > 0) of each part, :data:`CONFIDENCE_BINS` bins over
  (0, 1] (a score above 1 counts in the last bin);
- hands-only clips: clips whose body, face and mouth are missing in every frame while a hand is detected (MediaPipe
  Hands landmarks, ASL Signs clips whose pose and face are NaN), counted and as a share of the dataset's clips.
  They are a supported input (normalisation, the encoder and every head take them), not a finding: the count says
  how much of a dataset carries no body position and no non-manual signal;
- duration outliers: clips whose duration (frames / fps) has a modified z-score
  ``|0.6745 (x - median) / MAD| > 3.5`` (Iglewicz & Hoaglin) on log10 seconds, in a dataset of at least
  :data:`MIN_CLIPS_FOR_OUTLIERS` clips whose MAD is not 0. Log seconds, because clip lengths are ratios apart: a
  clip ten times the median is as odd as one a tenth of it;
- duplicate texts: a sentence on several samples, counted, with the most repeated (a corpus repeats "Thank you.").

Findings, each with its keys (the build is ``clean`` when there is none):

- ``leaks``, the one finding that makes the command exit 1: a source video of an excluded test split that is
  also in a sample pre-training reads. A source video is a sample's ``source_id`` within its adapter (two entries
  of one adapter, two releases of a dataset, share ids), except where one recording gives many clips
  (:func:`source_video`): a BOBSL cue ``<episode>_<n>`` belongs to its episode, a How2Sign sentence
  ``<VIDEO_ID>_<n>-<view>-rgb_front`` to the video ``<VIDEO_ID>-<view>-rgb_front``. (MS-ASL's source ids number
  clips, not YouTube videos: two clips of one video are not told apart here.)
- ``sources_across_splits``: any other source video in two (dataset, split)s, such as a dev video in train;
- ``texts_across_splits``: a sentence text in two (dataset, split)s, marked ``excluded_test_read`` when one is
  an excluded test split and another is read by pre-training. Texts are compared after NFKC, case folding and
  whitespace collapsing. ISLR texts (samples with a label, "This word is {gloss}.") name a class every split
  holds by design and are skipped. Not a leak (the exit status): sentences recur across a benchmark's own
  splits (32 of Phoenix-2014-T's 642 test translations occur in its train split), which fine-tuning on that
  benchmark sees anyway; the report lists them so they can be removed.
- ``cues_past_pose_end``: in a source cut by cue times (:data:`CUE_CUT_ADAPTERS`), a sample whose frame range
  ends after its pose. Samples keep no seconds, but curation made the range from the cue as ``round(t × fps)``
  (end exclusive), so the cue ends at ``frame_end / fps`` s and the pose at ``(frame_start + T) / fps`` s; both
  are reported. Cues that curation itself found past the end of their sequences were never written
  (``frame_range_outside`` rejects): they are listed apart, as context, not as findings.
- ``frame_count_mismatches``: a sample whose frame range does not span its pose otherwise (the reader refuses
  such a sample, so no model sees it), and each curation ``frame_count_mismatch`` warning: a written clip whose
  length differs from the annotation's own count (CSL-Daily ``length``, NMFs-CSL ``seq_len``, a trimmed WLASL /
  MS-ASL range);
- ``shared_signers``: a signer in two splits of a benchmark whose splits are signer-independent
  (:data:`SIGNER_INDEPENDENT`); samples without a signer are counted, not checked;
- ``unreadable_samples``: any other sample, or shard, the reader refuses.

Memory grows with the build: one entry per source video and per sentence, and a duration per sample.
"""

from __future__ import annotations

import html
import io
import json
import logging
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from slp.cli_errors import UserError, file_problem, folder_problem, read_user_text
from slp.config import to_dict
from slp.data.loader import PretrainDataConfig, selected
from slp.data.schema import InvalidSample, Sample, SampleMeta, validate_pose
from slp.data.shards import (
    JSON_DECODE_ERRORS,
    MANIFEST_NAME,
    ReadStats,
    iter_samples,
    load_npy,
    read_parquet,
    write_bytes_atomic,
    write_summary,
)
from slp.pose.layout import PART_NAMES, PART_SLICES, POINT_PART
from slp.synthetic.corpus import DATASET as SYNTHETIC

CONFIDENCE_BINS = 20
OUTLIER_Z = 3.5
MIN_CLIPS_FOR_OUTLIERS = 10
#: Keys of one finding printed on the console (the JSON has them all).
KEYS_SHOWN = 4
#: Rows of one finding's table in the HTML report (the JSON has them all).
ROWS_SHOWN = 200
#: Room above the longest bar of the missing-parts plot, as a factor of it.
AXIS_HEADROOM = 1.15

#: Adapter (or the synthetic corpus) → why its benchmark's splits are signer-independent.
SIGNER_INDEPENDENT: dict[str, str] = {
    "slr500": "the protocol trains on signers 1-36 and tests on 37-50 (Huang et al. 2018)",
    "nmfs_csl": "split by signer (Hu et al. 2021)",
    "msasl": "a signer-independent test: train, val and test signers do not overlap (Vaezi Joze & Koller 2019)",
    SYNTHETIC: "split by signer (slp.synthetic.corpus.signer_split)",
}
#: Adapters whose clips are cut out of longer recordings by subtitle or sentence times (MS-ASL's default
#: ``clips: raw``), so a frame range is a cue.
CUE_CUT_ADAPTERS = frozenset({"bobsl", "how2sign", "msasl"})

#: A How2Sign SENTENCE_NAME: the 11-character YouTube id, ``_<n>`` (``_<n>_<m>`` for merged sentences), the view.
_HOW2SIGN_SENTENCE = re.compile(r"(.{11})(?:_\d+)+(-\d+-rgb_front)")
FINDINGS = ("leaks", "sources_across_splits", "texts_across_splits", "cues_past_pose_end", "frame_count_mismatches",
            "shared_signers", "unreadable_samples")
_MISSING_COLUMNS = (*PART_NAMES, "both_hands")
_LEFT, _RIGHT = PART_NAMES.index("left_hand"), PART_NAMES.index("right_hand")
#: Columns of the per-part missing flags that are not a hand: all missing in every frame makes a hands-only clip.
_NOT_HANDS = [k for k in range(len(PART_NAMES)) if k not in (_LEFT, _RIGHT)]
_PART_SIZES = np.array([PART_SLICES[p].stop - PART_SLICES[p].start for p in PART_NAMES])


def source_video(adapter: str, source_id: str) -> str:
    """The recording a clip comes from (the module's rule): a BOBSL episode, a How2Sign video, else the id."""
    if adapter == "bobsl":
        return source_id.rsplit("_", 1)[0]
    if adapter == "how2sign" and (match := _HOW2SIGN_SENTENCE.fullmatch(source_id)):
        return match.group(1) + match.group(2)
    return source_id


def normalise_text(text: str) -> str:
    """The form texts are compared in: NFKC (full-width punctuation is ASCII), case folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def duration_outliers(keys: list[str], seconds: np.ndarray) -> list[dict[str, Any]]:
    """The clips whose log10 duration has a modified z-score beyond :data:`OUTLIER_Z` (none for fewer than
    :data:`MIN_CLIPS_FOR_OUTLIERS` clips or a MAD of 0), most extreme first."""
    if len(seconds) < MIN_CLIPS_FOR_OUTLIERS:
        return []
    logs = np.log10(seconds)
    median = float(np.median(logs))
    mad = float(np.median(np.abs(logs - median)))
    if mad == 0:
        return []
    z = 0.6745 * (logs - median) / mad
    order = np.argsort(-np.abs(z), kind="stable")
    return [{"key": keys[i], "seconds": round(float(seconds[i]), 3), "z": round(float(z[i]), 2)}
            for i in order if abs(z[i]) > OUTLIER_Z]


@dataclass
class _DatasetTally:
    adapter: str
    splits: Counter = field(default_factory=Counter)
    frames: int = 0
    missing_frames: np.ndarray = field(default_factory=lambda: np.zeros(len(_MISSING_COLUMNS), np.int64))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros((len(PART_NAMES), CONFIDENCE_BINS), np.int64))
    keys: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    without_signer: int = 0
    hands_only: int = 0

    def add(self, sample: Sample) -> None:
        conf = sample.pose[..., 2].astype(np.float32)  # (T, 79)
        missing = conf <= 0
        per_part = np.stack([missing[:, PART_SLICES[p]].all(axis=1) for p in PART_NAMES], axis=1)  # (T, parts)
        self.missing_frames[:-1] += per_part.sum(axis=0)
        both_hands_missing = per_part[:, _LEFT] & per_part[:, _RIGHT]
        self.missing_frames[-1] += int(both_hands_missing.sum())
        self.hands_only += bool(per_part[:, _NOT_HANDS].all() and not both_hands_missing.all())
        detected = ~missing
        bins = np.minimum(np.ceil(conf[detected] * CONFIDENCE_BINS).astype(np.int64) - 1, CONFIDENCE_BINS - 1)
        parts = np.broadcast_to(POINT_PART, conf.shape)[detected]
        self.confidence += np.bincount(parts * CONFIDENCE_BINS + bins,
                                       minlength=len(PART_NAMES) * CONFIDENCE_BINS).reshape(self.confidence.shape)
        self.frames += len(conf)
        self.splits[sample.meta.split] += 1
        self.keys.append(sample.key)
        self.seconds.append(len(conf) / sample.meta.fps)
        self.without_signer += sample.meta.signer == ""

    def report(self) -> dict[str, Any]:
        seconds = np.asarray(self.seconds)
        percentiles = (0, 5, 25, 50, 75, 95, 100)
        return {
            "adapter": self.adapter,
            "samples": len(self.keys),
            "samples_by_split": dict(sorted(self.splits.items())),
            "frames": self.frames,
            "hours": round(float(seconds.sum()) / 3600, 4),
            "missing_frame_rate": {name: round(int(n) / self.frames, 4) for name, n in
                                   zip(_MISSING_COLUMNS, self.missing_frames)},
            "hands_only_clips": self.hands_only,
            "hands_only_rate": round(self.hands_only / len(self.keys), 4),
            "missing_point_rate": {part: round(1 - int(self.confidence[k].sum()) / (self.frames * int(size)), 4)
                                   for k, (part, size) in enumerate(zip(PART_NAMES, _PART_SIZES))},
            "confidence_histogram": {"edges": np.linspace(0, 1, CONFIDENCE_BINS + 1).round(3).tolist(),
                                     "counts": {part: self.confidence[k].tolist()
                                                for k, part in enumerate(PART_NAMES)}},
            "seconds_percentiles": {str(p): round(float(v), 3) for p, v in
                                    zip(percentiles, np.percentile(seconds, percentiles))},
            "duration_outliers": duration_outliers(self.keys, seconds),
            "samples_without_signer": self.without_signer,
        }


@dataclass
class Audit:
    """What :func:`audit_build` found: ``report`` (what ``audit.json`` holds) and each dataset's clip durations in
    seconds (for the report's plot)."""

    report: dict[str, Any]
    durations: dict[str, np.ndarray]


Where = tuple[str, str]  # (dataset, split)


def _where(where: Where) -> str:
    return f"{where[0]}/{where[1]}"


class _Reader:
    """One pass over the shards: per-dataset tallies, the occurrences of every source video, sentence and
    signer, and what the reader refused."""

    def __init__(self, data: PretrainDataConfig, adapters: dict[str, str]):
        self.data = data
        self.whole_splits = PretrainDataConfig(**{**to_dict(data), "data_fraction": 1.0})
        self.adapters = adapters
        self.tallies: dict[str, _DatasetTally] = {}
        # (adapter, video) / normalised text → (dataset, split) → keys; (dataset, signer) → split → keys.
        self.videos: dict[tuple[str, str], dict[Where, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.texts: dict[str, dict[Where, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.text_forms: dict[str, str] = {}
        self.signers: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.read_keys: set[str] = set()
        self.split_status: dict[Where, str] = {}
        self.range_findings: dict[str, list[dict[str, Any]]] = {"cues_past_pose_end": [], "frame_count_mismatches": []}
        self.classified: set[tuple[str, str]] = set()  # (shard, key) of refused samples reported as a range finding

    def adapter(self, dataset: str) -> str:
        return self.adapters.get(dataset, dataset)

    def status(self, where: Where) -> str:
        """``read`` (pre-training reads this split, or the part of it its data fraction keeps), ``excluded_test``
        or ``held_out``."""
        if where not in self.split_status:
            dataset, split = where
            if selected(self.whole_splits, dataset, split, ""):
                self.split_status[where] = "read"
            else:
                self.split_status[where] = "excluded_test" if split == "test" else "held_out"
        return self.split_status[where]

    def add(self, sample: Sample) -> None:
        meta = sample.meta
        adapter = self.adapter(meta.dataset)
        self.tallies.setdefault(meta.dataset, _DatasetTally(adapter)).add(sample)
        where = (meta.dataset, meta.split)
        self.status(where)
        if selected(self.data, meta.dataset, meta.split, sample.key):
            self.read_keys.add(sample.key)
        self.videos[(adapter, source_video(adapter, meta.source_id))][where].append(sample.key)
        if meta.paired and meta.label < 0:
            text = normalise_text(meta.text)
            self.texts[text][where].append(sample.key)
            self.text_forms.setdefault(text, meta.text)
        if adapter in SIGNER_INDEPENDENT and meta.signer:
            self.signers[(meta.dataset, meta.signer)][meta.split].append(sample.key)

    def refused(self, raw: dict[str, Any], error: InvalidSample) -> None:
        """A sample the reader skipped: a frame range that does not span a readable pose is a range finding."""
        try:  # sound metadata and pose (InvalidSample is a ValueError), so the range is what the reader refused
            meta = SampleMeta.from_json(json.loads(raw["json"].decode("utf-8")))
            meta.validate()
            pose = load_npy(raw["pose.npy"])
            validate_pose(pose)
        except (KeyError, TypeError, *JSON_DECODE_ERRORS):  # InvalidSample is a ValueError
            return  # reported with the reader's own reason
        frames = len(pose)
        if meta.frame_end == -1 or meta.frame_end - meta.frame_start == frames:
            return
        key, pose_end = raw["__key__"], meta.frame_start + frames
        row = {"key": key, "dataset": meta.dataset, "split": meta.split, "frame_start": meta.frame_start,
               "frame_end": meta.frame_end, "pose_frames": frames, "reason": str(error)}
        if self.adapter(meta.dataset) in CUE_CUT_ADAPTERS and meta.frame_end > pose_end:
            row |= {"cue_end_seconds": round(meta.frame_end / meta.fps, 3),
                    "pose_end_seconds": round(pose_end / meta.fps, 3)}
            self.range_findings["cues_past_pose_end"].append(row)
        else:
            self.range_findings["frame_count_mismatches"].append(row | {"source": "shard"})
        self.classified.add((raw["__url__"], key))


def _build_paths(build: Path) -> tuple[Path, list[Path]]:
    """The manifest and shards of a build folder, or a :class:`UserError` naming what is missing."""
    if problem := folder_problem(build):
        raise UserError(f"{build}: {problem}")
    manifest = build / MANIFEST_NAME
    if manifest.exists() and (problem := file_problem(manifest)):
        raise UserError(f"{manifest}: {problem}")
    shards = sorted((build / "shards").glob("*.tar"))
    if not manifest.is_file() or not shards:
        missing = " and ".join(what for what, ok in ((MANIFEST_NAME, manifest.is_file()), ("shards/*.tar", shards))
                               if not ok)
        raise UserError(f"{build}: no {missing}; not a curation build (run slp-curate build first)")
    return manifest, shards


def _build_table(path: Path, columns: list[str], optional: tuple[str, ...] = ()):
    """Columns of a Parquet file of the build; one a file that is not whole or not curation's is a
    :class:`UserError` naming it."""
    if problem := file_problem(path):
        raise UserError(f"{path}: {problem}")
    try:
        return read_parquet(path, columns, optional)
    except ValueError as exc:  # not whole, or another tool's table
        raise UserError(f"{exc}; rerun slp-curate build to write it again") from None


def _build_json(path: Path) -> dict[str, Any]:
    """A JSON object the build wrote (``summary.json``); one that is not whole or not an object is a
    :class:`UserError` naming it."""
    try:
        data = json.loads(read_user_text(path))
    except JSON_DECODE_ERRORS as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise UserError(f"{where}: not valid JSON ({reason}; truncated?)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds a JSON {type(data).__name__}, not the object slp-curate build writes")
    return data


def _overlaps(occurrences: dict[Any, dict[Where, list[str]]], status, read_keys: set[str]) -> list[dict[str, Any]]:
    """Entries found in two (dataset, split)s or more: where, their keys, the excluded test splits among them and
    whether pre-training reads one of their samples elsewhere."""
    found = []
    for item, wheres in occurrences.items():
        if len(wheres) < 2:
            continue
        excluded = sorted(_where(w) for w in wheres if status(w) == "excluded_test")
        read = sorted(k for keys in wheres.values() for k in keys if k in read_keys)
        found.append({"item": item, "splits": {_where(w): sorted(keys) for w, keys in sorted(wheres.items())},
                      "excluded_test_splits": excluded, "read_by_pretraining": read,
                      "excluded_test_read": bool(excluded and read)})
    return sorted(found, key=lambda f: (not f["excluded_test_read"], str(f["item"])))


def _splits_not_curated(summary: Path) -> dict[str, int]:
    """The (dataset, split)s whose records the build's config kept out, from its ``summary.json``."""
    by_dataset = _build_json(summary).get("by_dataset", {})  # the synthetic corpus' summary has none
    try:
        return {_where((d, s)): int(c["excluded_split"]) for d, splits in by_dataset.items()
                for s, c in splits.items() if c.get("excluded_split")}
    except (AttributeError, TypeError, KeyError, ValueError):  # not {dataset: {split: {excluded_split: n}}}
        raise UserError(f"{summary}: by_dataset is not the counts per dataset and split slp-curate build "
                        f"writes") from None


def _curation_context(build: Path) -> dict[str, Any]:
    """What curation left beside the shards: the cues it dropped past the end of their sequences, its
    frame-count warnings and the splits its config kept out of the build."""
    context: dict[str, Any] = {"cues_dropped_past_end": [], "frame_count_warnings": [], "splits_not_curated": {}}
    rejects, warnings, summary = build / "rejects.parquet", build / "warnings.parquet", build / "summary.json"
    columns = ["dataset", "split", "source_id", "key", "reason", "detail"]
    # Each is optional ("where present"): a build of the synthetic corpus has neither rejects nor warnings.
    if rejects.exists():
        context["cues_dropped_past_end"] = [
            {c: row[c] for c in ("dataset", "split", "source_id", "detail")}
            for row in _build_table(rejects, columns).to_pylist() if row["reason"] == "frame_range_outside"]
    if warnings.exists():
        context["frame_count_warnings"] = [
            {c: row[c] for c in ("key", "dataset", "split", "detail")} | {"source": "curation warning"}
            for row in _build_table(warnings, columns).to_pylist() if row["reason"] == "frame_count_mismatch"]
    if summary.exists():
        context["splits_not_curated"] = _splits_not_curated(summary)
    return context


def audit_build(build: str | Path, data: PretrainDataConfig | None = None, *, data_source: str = "",
                progress: bool = True) -> Audit:
    """Audit the curation build in folder ``build`` (``shards/*.tar`` and ``manifest.parquet``) against what
    pre-training reads under ``data`` (default: :class:`PretrainDataConfig`'s defaults; ``data_source`` names where
    it came from). A folder that is not a build is a :class:`UserError`."""
    build = Path(build)
    manifest, shards = _build_paths(build)
    data = data if data is not None else PretrainDataConfig()
    table = _build_table(manifest, ["dataset"], ("adapter",))
    adapter = "adapter" if "adapter" in table.column_names else "dataset"  # a manifest not curation's has none
    adapters = dict(zip(table["dataset"].to_pylist(), table[adapter].to_pylist()))
    reader = _Reader(data, adapters)
    stats = ReadStats()
    shard_log = logging.getLogger("slp.data.shards")
    level = shard_log.level
    shard_log.setLevel(logging.ERROR)  # the audit reports every sample the reader skips
    try:
        with tqdm(total=table.num_rows, desc="audit", unit="sample", dynamic_ncols=True, leave=False,
                  disable=not progress) as bar:
            for sample in iter_samples(shards, stats, on_invalid=reader.refused):
                reader.add(sample)
                bar.update()
    finally:
        shard_log.setLevel(level)

    context = _curation_context(build)
    videos = _overlaps(reader.videos, reader.status, reader.read_keys)
    texts = _overlaps(reader.texts, reader.status, reader.read_keys)
    for entry in videos:
        entry["adapter"], entry["video"] = entry.pop("item")
    for entry in texts:
        entry["text"] = reader.text_forms[entry.pop("item")]
    signers = [{"dataset": dataset, "signer": signer, "splits": {s: sorted(k) for s, k in sorted(splits.items())},
                "why_signer_independent": SIGNER_INDEPENDENT[reader.adapter(dataset)]}
               for (dataset, signer), splits in sorted(reader.signers.items()) if len(splits) > 1]
    findings = {
        "leaks": [v for v in videos if v["excluded_test_read"]],
        "sources_across_splits": [v for v in videos if not v["excluded_test_read"]],
        "texts_across_splits": texts,
        "cues_past_pose_end": reader.range_findings["cues_past_pose_end"],
        "frame_count_mismatches": reader.range_findings["frame_count_mismatches"] + context.pop("frame_count_warnings"),
        "shared_signers": signers,
        "unreadable_samples": [e for e in stats.errors if (e["shard"], e["key"]) not in reader.classified],
    }
    counts = {name: len(findings[name]) for name in FINDINGS}
    duplicates = sorted(((sum(map(len, wheres.values())), reader.text_forms[text], wheres)
                         for text, wheres in reader.texts.items() if sum(map(len, wheres.values())) > 1),
                        key=lambda d: (-d[0], d[1]))
    statuses = {_where(w): s for w, s in sorted(reader.split_status.items())}
    report = {
        "build": str(build),
        "shards": len(shards),
        "samples": stats.samples,
        "pretraining": {
            "rule": data_source or "PretrainDataConfig defaults",
            "data": {name: to_dict(data)[name] for name in ("datasets", "splits", "exclude", "data_fraction")},
            "samples_read": len(reader.read_keys),
            "splits": statuses,
            "excluded_test_splits": [w for w, s in statuses.items() if s == "excluded_test"],
            "test_splits_read": [w for w, s in statuses.items() if s == "read" and w.endswith("/test")],
        },
        "datasets": {name: tally.report() for name, tally in sorted(reader.tallies.items())},
        "duplicate_texts": {
            "texts": len(duplicates),
            "samples": sum(n for n, _, _ in duplicates),
            "most_repeated": [{"text": text, "samples": n,
                               "splits": {_where(w): len(k) for w, k in sorted(wheres.items())}}
                              for n, text, wheres in duplicates[:20]],
        },
        "curation": context,
        "findings": findings,
        "counts": counts,
        "leak": counts["leaks"] > 0,
        "clean": not any(counts.values()),
    }
    durations = {name: np.asarray(tally.seconds) for name, tally in sorted(reader.tallies.items())}
    return Audit(report, durations)


# ------------------------------------------------------------------------------------------------- console lines


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_SHOWN])
    return shown + (f" (+{len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else "")


def _splits(entry: dict[str, Any]) -> str:
    return "; ".join(f"{w}: {_keys(keys)}" for w, keys in entry["splits"].items())


def _text_status(f: dict[str, Any]) -> str:
    """What a sentence in several splits is to pre-training, in words that agree with the leak verdict: in an
    excluded test split and read by pre-training in another, yet not a leak (only a source video is one)."""
    if not f["excluded_test_read"]:
        return ""
    return (f" (in excluded {', '.join(f['excluded_test_splits'])}, and in {', '.join(_read_splits(f))}, which "
            f"pre-training reads: a shared sentence, not a leaked video)")


def _read_splits(f: dict[str, Any]) -> list[str]:
    """The splits of a finding that hold samples pre-training reads."""
    read = set(f["read_by_pretraining"])
    return [w for w, keys in f["splits"].items() if read.intersection(keys)]


def _describe(name: str, f: dict[str, Any]) -> str:
    """One finding as one line."""
    if name == "leaks":
        return (f"LEAK: source video {f['adapter']}:{f['video']} of excluded {', '.join(f['excluded_test_splits'])} "
                f"is read by pre-training: {_splits(f)}")
    if name == "sources_across_splits":
        return f"source video in several splits: {f['adapter']}:{f['video']}: {_splits(f)}"
    if name == "texts_across_splits":
        return f"text in several splits{_text_status(f)}: {json.dumps(f['text'], ensure_ascii=False)}: {_splits(f)}"
    if name == "cues_past_pose_end":
        return (f"cue past the end of its pose: {f['key']}: the cue ends at {f['cue_end_seconds']} s, the pose at "
                f"{f['pose_end_seconds']} s")
    if name == "frame_count_mismatches":
        if f["source"] == "shard":
            return (f"frame count mismatch: {f['key']}: frames [{f['frame_start']}, {f['frame_end']}) but the pose "
                    f"has {f['pose_frames']}")
        return f"frame count mismatch (curation warning): {f['key']}: {f['detail']}"
    if name == "shared_signers":
        splits = "; ".join(f"{s}: {_keys(k)}" for s, k in f["splits"].items())
        return f"signer {f['signer']} in several splits of signer-independent {f['dataset']}: {splits}"
    return f"unreadable: {f['shard']} {f['key'] or '(the shard)'}: {f['reason']}"


def finding_lines(report: dict[str, Any], limit: int = 20) -> list[str]:
    """One line per finding (at most ``limit`` of a kind, then a count of the rest), leaks first."""
    lines: list[str] = []
    for name in FINDINGS:
        items = report["findings"][name]
        lines += [_describe(name, f) for f in items[:limit]]
        if len(items) > limit:
            lines.append(f"... and {len(items) - limit} more {name} (audit.json)")
    return lines


# ---------------------------------------------------------------------------------------------------- the report


def _svg(fig, plot_id: str) -> str:
    """A matplotlib figure as inline SVG markup with ``id=plot_id`` (text as text, ids salted per plot so
    several plots in one page never share one)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return svg.replace("<svg", f'<svg id="{plot_id}" role="img"', 1)


def missing_axis_limit(fractions: Iterable[float]) -> float:
    """The end of the missing-parts plot's axis: the largest fraction with :data:`AXIS_HEADROOM`, at most 1 (at
    least 0.05, so a build missing nothing still gets a scale)."""
    return min(1.0, max(0.05, AXIS_HEADROOM * max(fractions, default=0.0)))


def _plots(audit: Audit) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = audit.report["datasets"]
    names = list(datasets)
    plots: dict[str, str] = {}
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "plot-missing"}):
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.6), dpi=100)
        height = 0.8 / len(_MISSING_COLUMNS)
        y = np.arange(len(names))
        for k, column in enumerate(_MISSING_COLUMNS):
            ax.barh(y + k * height, [datasets[n]["missing_frame_rate"][column] for n in names], height,
                    label=column.replace("_", " "))
        ax.set_yticks(y + 0.4 - height / 2, names)
        ax.invert_yaxis()
        ax.set_xlim(0, missing_axis_limit(datasets[n]["missing_frame_rate"][c] for n in names
                                          for c in _MISSING_COLUMNS))
        ax.set_xlabel("fraction of frames with every point of the part at confidence 0")
        ax.legend(ncols=len(_MISSING_COLUMNS), fontsize="x-small", loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        plots["plot-missing"] = _svg(fig, "plot-missing")
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "plot-confidence"}):
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.4 * rows + 0.4), dpi=100, squeeze=False,
                                 sharex=True)
        centres = (np.arange(CONFIDENCE_BINS) + 0.5) / CONFIDENCE_BINS
        for ax, name in zip(axes.ravel(), names):
            for part, counts in datasets[name]["confidence_histogram"]["counts"].items():
                total = sum(counts)
                ax.plot(centres, np.asarray(counts) / total if total else np.zeros(CONFIDENCE_BINS),
                        drawstyle="steps-mid", label=part.replace("_", " "))
            ax.set_title(name, fontsize="medium")
        for ax in axes.ravel()[len(names):]:
            ax.set_visible(False)
        axes.ravel()[0].legend(fontsize="x-small")
        fig.supxlabel("confidence of detected points")
        fig.supylabel("fraction of the part's detected points")
        fig.tight_layout()
        plots["plot-confidence"] = _svg(fig, "plot-confidence")
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "plot-durations"}):
        fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), 4.5), dpi=100)
        ax.boxplot([audit.durations[n] for n in names], showfliers=False, whis=(0, 100))
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        outliers = [(i, o["seconds"]) for i, name in enumerate(names, start=1)
                    for o in datasets[name]["duration_outliers"][:ROWS_SHOWN]]
        if outliers:
            ax.scatter(*zip(*outliers), color="crimson", marker="x", zorder=3, label="outlier")
            ax.legend(fontsize="small")
        ax.set_yscale("log")
        ax.set_ylabel("clip duration (s, log scale)")
        ax.set_title("whiskers at the shortest and longest clip; outliers (modified z > 3.5) marked ×",
                     fontsize="small")
        fig.tight_layout()
        plots["plot-durations"] = _svg(fig, "plot-durations")
    return plots


def _table(headers: list[str], rows: list[list[Any]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows[:ROWS_SHOWN])
    more = (f'<p class="more">{len(rows) - ROWS_SHOWN} more rows in audit.json</p>' if len(rows) > ROWS_SHOWN
            else "")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def _splits_cell(splits: dict[str, list[str]]) -> str:
    return "; ".join(f"{w}: {', '.join(keys)}" for w, keys in splits.items())


def _finding_tables(findings: dict[str, list[dict[str, Any]]]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    return {
        "leaks": (["adapter", "video", "excluded test split", "samples by split"],
                  [[f["adapter"], f["video"], ", ".join(f["excluded_test_splits"]), _splits_cell(f["splits"])]
                   for f in findings["leaks"]]),
        "sources_across_splits": (["adapter", "video", "samples by split"],
                                  [[f["adapter"], f["video"], _splits_cell(f["splits"])]
                                   for f in findings["sources_across_splits"]]),
        "texts_across_splits": (["text", "excluded test split", "pre-training reads it in", "samples by split"],
                                [[f["text"], ", ".join(f["excluded_test_splits"]) or "-",
                                  ", ".join(_read_splits(f)) or "-",
                                  _splits_cell(f["splits"])] for f in findings["texts_across_splits"]]),
        "cues_past_pose_end": (["key", "frames", "pose frames", "cue ends (s)", "pose ends (s)"],
                               [[f["key"], f"[{f['frame_start']}, {f['frame_end']})", f["pose_frames"],
                                 f["cue_end_seconds"], f["pose_end_seconds"]] for f in findings["cues_past_pose_end"]]),
        "frame_count_mismatches": (["key", "source", "what"],
                                   [[f["key"], f["source"], f.get("detail") or
                                     f"frames [{f['frame_start']}, {f['frame_end']}), pose {f['pose_frames']}"]
                                    for f in findings["frame_count_mismatches"]]),
        "shared_signers": (["dataset", "signer", "samples by split"],
                           [[f["dataset"], f["signer"], _splits_cell(f["splits"])]
                            for f in findings["shared_signers"]]),
        "unreadable_samples": (["shard", "key", "reason"],
                               [[f["shard"], f["key"], f["reason"]] for f in findings["unreadable_samples"]]),
    }


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.status{padding:.4em .8em;display:inline-block;
font-weight:bold}.leak{background:#f8d0d0}.findings{background:#fbeec8}.clean{background:#d4f0d4}
figure{margin:1em 0}svg{max-width:100%;height:auto}.more{color:#666;font-size:.85em}
"""


def render_html(audit: Audit) -> str:
    """The report as one self-contained HTML page: status, findings, per-dataset tables and inline SVG plots."""
    report = audit.report
    counts, pretraining = report["counts"], report["pretraining"]
    status = ("leak", f"LEAK: {counts['leaks']} source video(s) of an excluded test split read by pre-training")\
        if report["leak"] else (("clean", "clean: no finding") if report["clean"]
                                else ("findings", f"{sum(counts.values())} finding(s), no leak"))
    plots = _plots(audit)
    tables = _finding_tables(report["findings"])
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>slp-curate audit: "
             f"{html.escape(report['build'])}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Audit of {html.escape(report['build'])}</h1>",
             f'<p id="status" class="status {status[0]}">{html.escape(status[1])}</p>',
             f"<p>{report['samples']} samples in {report['shards']} shards. What pre-training reads: "
             f"{html.escape(pretraining['rule'])} ({html.escape(json.dumps(pretraining['data']))}): "
             f"{pretraining['samples_read']} samples. Excluded test splits in the build: "
             f"{html.escape(', '.join(pretraining['excluded_test_splits']) or 'none')}.</p>"]
    not_curated = report["curation"]["splits_not_curated"]
    if not_curated:
        parts.append("<p>Splits curation kept out of the build (exclude_splits): "
                     + html.escape(", ".join(f"{w} ({n} records)" for w, n in not_curated.items())) + "</p>")
    parts.append("<h2>Findings</h2><p>A leak is a source video of an excluded test split that pre-training reads "
                 "(exit status 1); a sentence shared with an excluded test split is listed under texts across "
                 "splits, not counted as a leak.</p>" + _table(["finding", "count"], [[n.replace("_", " "), c]
                                                                      for n, c in counts.items()], "counts"))
    for name, (headers, rows) in tables.items():
        if rows:
            parts.append(f"<h3>{html.escape(name.replace('_', ' '))}</h3>" + _table(headers, rows, f"finding-{name}"))
    datasets = report["datasets"]
    hands_only = sum(d["hands_only_clips"] for d in datasets.values())
    parts.append(f'<h2>Datasets</h2><p id="hands-only">Hands-only clips (body, face and mouth missing in every frame, '
                 f"a hand detected: MediaPipe Hands landmarks, say): {hands_only} of {report['samples']} samples, a "
                 "supported input, not a finding.</p>")
    parts.append(_table(
        ["dataset", "adapter", "samples by split", "hours", "median s", *[f"missing {c.replace('_', ' ')}"
                                                                         for c in _MISSING_COLUMNS],
         "hands-only clips", "duration outliers", "without signer"],
        [[name, d["adapter"], ", ".join(f"{s} {n}" for s, n in d["samples_by_split"].items()), d["hours"],
          d["seconds_percentiles"]["50"], *[f"{d['missing_frame_rate'][c]:.1%}" for c in _MISSING_COLUMNS],
          f"{d['hands_only_clips']} ({d['hands_only_rate']:.1%})", len(d["duration_outliers"]),
          d["samples_without_signer"]] for name, d in datasets.items()], "datasets"))
    parts.append('<h2>Missing parts</h2><figure id="figure-missing">' + plots["plot-missing"] + "</figure>")
    parts.append('<h2>Confidence of detected points</h2><figure id="figure-confidence">' + plots["plot-confidence"]
                 + "</figure>")
    parts.append('<h2>Clip durations</h2><figure id="figure-durations">' + plots["plot-durations"] + "</figure>")
    outliers = [[name, o["key"], o["seconds"], o["z"]] for name, d in datasets.items() for o in d["duration_outliers"]]
    if outliers:
        parts.append(_table(["dataset", "key", "seconds", "modified z"], outliers, "duration-outliers"))
    duplicates = report["duplicate_texts"]
    parts.append(f"<h2>Duplicate texts</h2><p>{duplicates['texts']} sentence(s) on {duplicates['samples']} samples."
                 "</p>" + _table(["text", "samples", "by split"],
                                 [[d["text"], d["samples"], ", ".join(f"{w} {n}" for w, n in d["splits"].items())]
                                  for d in duplicates["most_repeated"]], "duplicate-texts"))
    dropped = report["curation"]["cues_dropped_past_end"]
    parts.append(f"<h2>Cues curation dropped past the end of their sequences</h2><p>{len(dropped)} "
                 "(frame_range_outside rejects: never written).</p>"
                 + _table(["dataset", "split", "source id", "detail"],
                          [[d["dataset"], d["split"], d["source_id"], d["detail"]] for d in dropped], "cues-dropped"))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(audit: Audit, out_dir: str | Path) -> tuple[Path, Path]:
    """``audit.json`` and ``audit.html`` in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    write_summary(out_dir / "audit.json", audit.report)
    page = write_bytes_atomic(out_dir / "audit.html", render_html(audit).encode("utf-8"))
    return out_dir / "audit.json", page
