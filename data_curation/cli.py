"""``slp-curate``: build SL-1.5M-style shards and look at what they hold.

    slp-curate build --config configs/curate/sl15m.yaml [workers=4 output=runs/sl15m ...]
    slp-curate stats runs/sl15m [--out runs/sl15m/stats]
    slp-curate audit runs/sl15m [--out DIR] [--pretrain-config configs/pretrain/paper.yaml]   # exit 1: a leak
    slp-curate fixtures --out runs/fixtures     # the nine datasets in their release formats, small, + a config
    slp-curate synthetic --out runs/synthetic [num_glosses=40 num_signers=12 ...]
    slp-curate render POSE_OR_SHARD --out runs/render/football [--key KEY] [--video VIDEO.mp4] [--fps 25 ...]
    slp-curate export-pose SHARD.tar --key KEY --out runs/KEY.pose   # a shard sample as a 79-point .pose

A mistake in what you give (a config, a file, an option) is one line naming it, exit status 2
(:mod:`slp.cli_errors`); a record that cannot be curated is a row of ``rejects.parquet`` and a count here.
``audit`` exits 1 when a source video of a test split pre-training excludes is in what it reads.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from data_curation import extract
from slp.cli_errors import (
    ArgumentParser,
    UserError,
    file_problem,
    load_user_config,
    output_folder_problem,
    run_cli,
)

if TYPE_CHECKING:
    import numpy as np


def _build(args: argparse.Namespace) -> None:
    from data_curation.config import CurateConfig
    from data_curation.pipeline import ERRORS_LOG, build

    cfg = load_user_config(CurateConfig, args.config, args.overrides)
    summary = build(cfg, source=args.config)
    totals = summary["totals"]
    print(f"{totals['records_in']} records → {totals['written']} samples ({totals['paired']} paired) in "
          f"{summary['shards']} shards, {totals['rejected']} rejected; {summary['resumed_jobs']} of "
          f"{summary['jobs']} jobs resumed; {summary['samples_per_second']} samples/s")
    print(f"{'dataset':<14} {'split':<6} {'in':>8} {'written':>8} {'rejected':>8}  rejects by reason")
    for dataset, splits in summary["by_dataset"].items():
        for split, c in splits.items():
            reasons = ", ".join(f"{reason} {n}" for reason, n in c["rejects_by_reason"].items())
            print(f"{dataset:<14} {split:<6} {c['records_in']:>8} {c['written']:>8} {c['rejected']:>8}  {reasons}")
    if totals["warnings"]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in totals["warnings_by_reason"].items())
        print(f"warnings (samples written): {reasons}; see {Path(cfg.output) / 'warnings.parquet'}")
    errors = totals["rejects_by_reason"].get("processing_error", 0)
    if errors:
        print(f"{errors} record(s) failed with an unexpected error (processing_error): tracebacks in "
              f"{Path(cfg.output) / ERRORS_LOG}")
    print(f"reconciled: records in = written + rejected ({summary['reconciled']}); outputs under {cfg.output}")


def _stats(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from data_curation.stats import MANIFEST_COLUMNS, format_table, write_stats
    from slp.data.shards import check_parquet

    build_dir = Path(args.build)
    manifest = build_dir / "manifest.parquet" if build_dir.is_dir() else build_dir
    if not manifest.exists():
        raise UserError(f"{manifest}: no such file; no manifest.parquet (run slp-curate build first)")
    try:
        check_parquet(manifest, MANIFEST_COLUMNS)
    except ValueError as exc:
        raise UserError(f"{manifest}: not a curation manifest ({str(exc).removeprefix(f'{manifest}: ')})") from None
    out = Path(args.out) if args.out else manifest.parent
    if problem := output_folder_problem(out):
        raise UserError(f"--out: {problem}")
    try:
        stats = write_stats(manifest, out)
    except (pa.ArrowException, OSError) as exc:  # data pages that do not read (a file damaged past its footer)
        raise UserError(f"{manifest}: not a curation manifest ({' '.join(str(exc).split())})") from None
    print(format_table(stats))
    print(f"stats → {out / 'stats.json'}, duration histogram → {out / 'duration_histogram.png'}")


def _audit(args: argparse.Namespace) -> int:
    from data_curation.audit import audit_build, finding_lines, write_report

    data, source = None, ""
    if args.pretrain_config:
        from pretrain.config import PretrainRunConfig

        data, source = load_user_config(PretrainRunConfig, args.pretrain_config).data, args.pretrain_config
    if args.out and (problem := output_folder_problem(args.out)):
        raise UserError(f"--out: {problem}")
    audit = audit_build(args.build, data, data_source=source)
    report = audit.report
    json_path, html_path = write_report(audit, args.out or args.build)
    pretraining, data = report["pretraining"], report["pretraining"]["data"]
    print(f"{report['samples']} samples in {report['shards']} shards; pre-training reads {pretraining['samples_read']} "
          f"of them ({pretraining['rule']}: splits {', '.join(data['splits']) or 'all'}, {len(data['exclude'])} "
          f"dataset/split(s) excluded); excluded test splits in the build: "
          f"{', '.join(pretraining['excluded_test_splits']) or 'none'}")
    for line in finding_lines(report):
        print(line)
    counts = report["counts"]
    found = ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "clean"
    print(f"{'LEAK' if report['leak'] else 'no leak'}: {found} → {json_path}, {html_path}")
    return 1 if report["leak"] else 0


def _fixtures(args: argparse.Namespace) -> None:
    from data_curation.fixtures import write_fixture_datasets

    if problem := output_folder_problem(args.out):
        raise UserError(f"--out: {problem}")
    config = write_fixture_datasets(args.out, tuple(args.datasets) if args.datasets else None)
    print(f"fixtures under {args.out}; build them with:\n  slp-curate build --config {config}")


def _synthetic(args: argparse.Namespace) -> None:
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    cfg = load_user_config(SyntheticConfig, args.config, args.overrides)
    if problem := output_folder_problem(args.out):
        raise UserError(f"--out: {problem}")
    summary = write_synthetic_corpus(args.out, cfg)
    print(f"{summary['samples']} synthetic samples in {len(summary['shards'])} shards under {args.out}")
    for name, count in summary["by_kind_and_split"].items():
        print(f"  {name:<20} {count:>6}")


def _shard_sample(path: Path, key: str | None):
    """The sample ``key`` of the shard at ``path`` (its first valid sample when ``key`` is None)."""
    from slp.data.shards import ReadStats, iter_samples

    stats = ReadStats()
    shard_log = logging.getLogger("slp.data.shards")
    level = shard_log.level
    shard_log.setLevel(logging.ERROR)  # the skipped samples are reported in the one error line below
    try:
        for sample in iter_samples([path], stats):
            if key in (None, sample.key):
                return sample
    finally:
        shard_log.setLevel(level)
    skipped = f" ({len(stats.errors)} skipped, first: {stats.errors[0]['reason']})" if stats.errors else ""
    raise UserError(f"{path}: no valid sample{' ' + key if key else ''} in this shard{skipped}")


@dataclass
class _RenderInput:
    """What ``render`` draws: a pose ``(T, 79, 3)`` in shard coordinates, its frame size and fps, a name, the
    source video a ``.pose`` records (``""``: none) and the frame of the source the pose starts at."""

    pose: np.ndarray
    width: int
    height: int
    fps: float
    name: str
    recorded_video: str = ""
    start: int = 0


def _load_render_input(args: argparse.Namespace) -> _RenderInput:
    """The pose file or shard sample to render."""
    from slp.pose.readers import PoseFormatError, read_pose, to_shard_pose
    from slp.render import recorded_video

    path = Path(args.input)
    if path.suffix == ".tar":
        if problem := file_problem(path):
            raise UserError(f"{path}: {problem}")
        sample = _shard_sample(path, args.key)
        m = sample.meta
        return _RenderInput(sample.pose, m.width, m.height, m.fps, sample.key, start=m.frame_start)
    try:
        seq = read_pose(path, args.format, fps=args.fps, width=args.width, height=args.height,
                        allow_pickle=args.allow_pickle, key=args.key)
    except PoseFormatError as exc:
        raise UserError(str(exc)) from None
    if seq.num_frames == 0:
        raise UserError(f"{path}: holds no frame")
    video = recorded_video(path) if path.suffix.lower() == ".pose" else ""
    return _RenderInput(to_shard_pose(seq), seq.width, seq.height, seq.fps, path.stem, video)


def _render_video(args: argparse.Namespace, clip: _RenderInput) -> tuple[str | None, str]:
    """(the video to draw on, None for a blank canvas; the words saying so in the printed line)."""
    if args.video:
        return args.video, f"on {args.video}"
    if clip.recorded_video and Path(clip.recorded_video).is_file():
        return clip.recorded_video, f"on {clip.recorded_video} (its source video)"
    if clip.recorded_video:
        return None, f"on a blank canvas (its source video {clip.recorded_video} is not there; give --video)"
    return None, "on a blank canvas"


def _render(args: argparse.Namespace) -> None:
    from slp.render import VideoError, render_animation, render_contact_sheet

    out = Path(args.out)
    if problem := output_folder_problem(out.parent):
        raise UserError(f"--out: {problem}")
    if args.video_start is not None and args.video_start < 0:
        raise UserError(f"--video-start {args.video_start}: must be 0 or more")
    clip = _load_render_input(args)
    video, where = _render_video(args, clip)
    if args.video_start is not None and video is None:
        raise UserError(f"--video-start {args.video_start}: there is no video to draw on (give --video)")
    width, height = (None, None) if video else (clip.width, clip.height)  # on a video: the video's frame size
    drawing = {"width": width, "height": height, "fps": clip.fps, "video": video,
               "video_start": clip.start if args.video_start is None else args.video_start}
    try:
        animation = render_animation(clip.pose, out.with_name(out.name + args.animation), **drawing)
        sheet = render_contact_sheet(clip.pose, out.with_name(out.name + "_sheet.png"), **drawing)
    except VideoError as exc:
        raise UserError(f"--video {exc}" if args.video else f"{exc} (the source video {args.input} records)") from None
    print(f"{clip.name}: {len(clip.pose)} frames {where} → {animation}, {sheet}")


def _export_pose(args: argparse.Namespace) -> None:
    from slp.pose.export import write_pose_79

    path = Path(args.shard)
    problem = file_problem(path)
    if problem is not None:
        raise UserError(f"{path}: {problem}")
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: is a directory, not a file")
    if problem := output_folder_problem(Path(args.out).parent):
        raise UserError(f"--out: {problem}")
    sample = _shard_sample(path, args.key)
    m = sample.meta
    out = write_pose_79(args.out, sample.pose, m.fps, m.width, m.height)
    print(f"{sample.key}: {len(sample.pose)} frames, {m.width}x{m.height} at {m.fps} fps → {out}")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="slp-curate", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    bld = sub.add_parser("build", help="curate the configured datasets into shards, manifest, rejects, summary")
    bld.add_argument("--config", required=True, help="YAML of data_curation.config.CurateConfig (configs/curate/)")
    bld.add_argument("overrides", nargs="*", help="key=value overrides of the config, e.g. workers=4")
    bld.set_defaults(run=_build)

    sts = sub.add_parser("stats", help="Table II per sign language and the duration histogram of a build")
    sts.add_argument("build", help="a build folder (or its manifest.parquet)")
    sts.add_argument("--out", help="where stats.json and duration_histogram.png go (default: the build folder)")
    sts.set_defaults(run=_stats)

    aud = sub.add_parser("audit", help="leaks, frame-range and cue problems, shared signers, missing parts of a "
                                       "build: audit.json + audit.html; exit 1 on a test-split leak")
    aud.add_argument("build", help="a build folder (shards/*.tar and manifest.parquet)")
    aud.add_argument("--out", help="where audit.json and audit.html go (default: the build folder)")
    aud.add_argument("--pretrain-config", help="a pre-training YAML (configs/pretrain/) whose data: decides what "
                                               "pre-training reads (default: the train splits)")
    aud.set_defaults(run=_audit)

    fix = sub.add_parser("fixtures", help="write small datasets in the nine sources' release formats + a config")
    fix.add_argument("--out", required=True, help="output folder (one folder a dataset, curate.yaml)")
    fix.add_argument("--datasets", nargs="*", help="a subset of the nine (default: all)")
    fix.set_defaults(run=_fixtures)

    syn = sub.add_parser("synthetic", help="write the procedural synthetic signer corpus as shards")
    syn.add_argument("--out", required=True, help="output folder (shards/, manifest.parquet, summary.json)")
    syn.add_argument("--config", help="YAML of slp.synthetic.SyntheticConfig fields")
    syn.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    syn.set_defaults(run=_synthetic)

    ren = sub.add_parser("render", help="draw a 79-point sequence as GIF/MP4 and a contact-sheet PNG")
    ren.add_argument("input", help="a pose file (.pose, MMPose .json, .npy, .npz, .pkl) or a shard .tar")
    ren.add_argument("--out", required=True, help="output prefix: PREFIX.gif and PREFIX_sheet.png")
    ren.add_argument("--key", help="sample key inside a shard or a pickle collection")
    ren.add_argument("--format", default="auto", help="pose file format (auto from the suffix)")
    ren.add_argument("--fps", type=float, help="for files that do not record it")
    ren.add_argument("--width", type=int, help="frame width, for files that do not record it")
    ren.add_argument("--height", type=int, help="frame height, for files that do not record it")
    ren.add_argument("--allow-pickle", action="store_true", help="read SLRT pickles (they can run code)")
    ren.add_argument("--animation", choices=[".gif", ".mp4"], default=".gif")
    ren.add_argument("--video", help="draw on the frames of this video (default: the source video a .pose of "
                                     "slp-curate extract records, when it is there; else a blank canvas)")
    ren.add_argument("--video-start", type=int, help="the video frame the pose starts at (default: a shard "
                                                     "sample's frame_start, else 0)")
    ren.set_defaults(run=_render)

    exp = sub.add_parser("export-pose", help="write a shard sample as a pose-format .pose (79 named points, pixels)")
    exp.add_argument("shard", help="a shard .tar")
    exp.add_argument("--key", required=True, help="the sample's key inside the shard")
    exp.add_argument("--out", required=True, help="the .pose file to write")
    exp.set_defaults(run=_export_pose)

    ext = sub.add_parser("extract", help="poses from videos: one COCO-WholeBody 133 .pose per video")
    extract.add_arguments(ext)
    ext.set_defaults(run=extract.run)
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


def main(argv: list[str] | None = None) -> None:
    status = run_cli(_main, argv, prog="slp-curate")
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
