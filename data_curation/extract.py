"""``slp-curate extract``: poses from videos, one COCO-WholeBody 133 ``.pose`` file per video.

    slp-curate extract --backend mediapipe --videos VIDEO_DIR --out runs/poses            # offline, CPU
    slp-curate extract --backend rtmlib --videos list.txt --out runs/poses --workers 4    # RTMW on onnxruntime
    slp-curate extract --backend mmpose --videos VIDEO_DIR --out runs/poses --engine ray --workers 8
    slp-curate extract ... --engine ray --ray-address auto                                # join a running cluster

``--videos`` is one video file (a path with a video suffix), a folder (searched recursively; a subfolder that
cannot be read is a warning line and a count in the summary) or a list file (UTF-8 text, one path a line, relative
to the list's folder); the first line printed says which it was taken for.
Videos already extracted are skipped, so rerunning a killed command finishes it. A video that cannot be extracted
(unreadable, no frame, nobody in it) is a line of ``OUT/failures.jsonl`` and a count here, not an error of the
run; ``OUT/summary.json`` holds the counts and rates, and the frames of every ``.pose`` in ``OUT`` (those of
earlier runs too). See :mod:`slp.extract` for the backends, the main signer and the file layout.
"""

from __future__ import annotations

import argparse
import os

import yaml

from slp.cli_errors import UserError, output_folder_problem

#: What ``--videos`` was taken for (:func:`slp.extract.pipeline.source_kind`), as the first line says it.
SOURCE_KINDS = {"video": "a file: {path}", "folder": "a folder: {path}", "list": "list file {path}"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``slp-curate extract`` on ``parser`` (its subparser)."""
    parser.add_argument("--backend", required=True,
                        help="mediapipe (offline CPU), rtmlib (RTMW / DWPose on onnxruntime), mmpose (HRNet-w48 + "
                             "DarkPose), or package.module:factory for your own estimator")
    parser.add_argument("--videos", required=True,
                        help="a video file, a folder of videos or a list file (UTF-8 text, one path a line)")
    parser.add_argument("--out", required=True, help="output folder: <key>.pose, failures.jsonl, summary.json")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: worker processes on this machine; ray: a Ray actor pool (default: local)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes or Ray actors, each with its own model (default: 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per backend call (default: 16)")
    parser.add_argument("--ray-address", help="join this Ray cluster (e.g. auto or HEAD:6379); default: a local one")
    parser.add_argument("--gpus-per-worker", type=float,
                        help="GPUs per Ray actor (default: 1 for rtmlib / mmpose when the cluster has GPUs, else 0)")
    parser.add_argument("--device", help="rtmlib: auto (default), cuda or cpu; mmpose: e.g. cuda:0")
    parser.add_argument("--mediapipe-python",
                        help="the Python of MediaPipe's venv (default: $SLP_MEDIAPIPE_PYTHON, else .venv-mediapipe)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a backend constructor option, e.g. mode=balanced (rtmlib), pose2d=NAME (mmpose); "
                             "repeatable; values are YAML scalars or lists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def backend_options(args: argparse.Namespace) -> dict:
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not (sep and key.strip()):
            raise UserError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"--option {item!r}: the value is not a YAML scalar or list ({exc})") from None
    if args.device:
        if args.backend not in ("rtmlib", "mmpose"):
            raise UserError(f"--device applies to the rtmlib and mmpose backends, not {args.backend}")
        options["device"] = args.device
    if args.mediapipe_python:
        if args.backend != "mediapipe":
            raise UserError(f"--mediapipe-python applies to the mediapipe backend, not {args.backend}")
        if not os.access(args.mediapipe_python, os.X_OK):
            raise UserError(f"--mediapipe-python {args.mediapipe_python}: not an executable file")
        options["python"] = args.mediapipe_python
    return options


def run(args: argparse.Namespace) -> None:
    """Run the extraction and print the summary; returns None (exit status 0: every video is extracted or logged
    as failed). Mistakes in the arguments, an unknown backend, an estimator that cannot run here and a missing Ray
    for ``--engine ray`` raise :class:`UserError`."""
    from slp.extract.backends import BackendSpec, BackendUnavailable
    from slp.extract.pipeline import FAILURES_LOG, SUMMARY, VideoListing, list_videos, run_extraction

    if args.workers < 1 or args.batch_size < 1:
        raise UserError("--workers and --batch-size must be at least 1")
    if args.engine == "local" and (args.ray_address or args.gpus_per_worker is not None):
        raise UserError("--ray-address and --gpus-per-worker need --engine ray")
    if problem := output_folder_problem(args.out):
        raise UserError(f"--out: {problem}")
    for name in (SUMMARY, FAILURES_LOG):  # read (the summary) and rewritten by the run: files
        if os.path.isdir(os.path.join(args.out, name)):
            raise UserError(f"--out: {os.path.join(args.out, name)}: is a directory, not a file (the run writes its "
                            f"{name} there)")
    listing = VideoListing()
    try:
        jobs = list_videos(args.videos, listing)
    except ValueError as exc:
        raise UserError(f"--videos: {exc}") from None
    spec = BackendSpec(args.backend, backend_options(args))
    count = f"{len(jobs)} video{'' if len(jobs) == 1 else 's'}"
    print(f"{count} ({SOURCE_KINDS[listing.kind].format(path=args.videos)})")
    for folder in listing.unreadable_folders:
        print(f"warning: --videos: cannot read the folder {folder}; its videos are skipped")
    try:
        summary = run_extraction(jobs, args.out, spec, engine=args.engine, workers=args.workers,
                                 batch_size=args.batch_size, ray_address=args.ray_address,
                                 gpus_per_worker=args.gpus_per_worker, progress=not args.no_progress,
                                 unreadable_folders=listing.unreadable_folders)
    except BackendUnavailable as exc:
        raise UserError(f"--backend {args.backend}: {exc}") from None
    print(f"{summary['videos']} videos: {summary['extracted']} extracted, {summary['already_done']} already done, "
          f"{summary['failed']} failed; {summary['frames']} frames in {summary['seconds']:.1f} s "
          f"({summary['videos_per_second']} videos/s, {summary['frames_per_second']} frames/s, {args.engine} engine, "
          f"{args.workers} worker(s))")
    if summary["failed"]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in summary["failures_by_reason"].items())
        print(f"failed: {reasons}; see {os.path.join(args.out, FAILURES_LOG)}")
    if listing.unreadable_folders:
        print(f"{len(listing.unreadable_folders)} folder(s) under --videos could not be read; their videos are "
              f"not counted")
    if summary["unreadable_pose_files"]:
        unreadable = summary["unreadable_pose_files"]
        print(f"warning: {len(unreadable)} .pose file(s) in {args.out} do not read back (not counted): "
              f"{', '.join(unreadable[:4])}{' ...' if len(unreadable) > 4 else ''}")
    print(f"{args.out} holds {summary['pose_files']} .pose files, {summary['pose_frames']} frames; estimator: "
          f"{', '.join(summary['estimators']) or '-'}; summary in {os.path.join(args.out, SUMMARY)}")
