"""``slp-predict``: a fine-tuned head's predictions on videos, pose files and shard samples.

    slp-predict --model runs/finetune/islr_wlasl/model clip.pose                 # ISLR: top-5 glosses
    slp-predict --model ORG/NAME clip.mp4 --backend mediapipe --render clip.gif  # a video, a Hub head, a GIF
    slp-predict --model DIR shards/wlasl-000000.tar --key wlasl_00335 --out prediction.json
    slp-predict --model DIR poses/ --out predictions.json --render renders/      # batch: a folder (or a list file)
    slp-predict --model RETRIEVAL_DIR clip.pose --texts sentences.txt            # the best of these sentences
    slp-predict --model RETRIEVAL_DIR clips/ --text "The weather is nice today."  # the clips ranked for a sentence

--model is a head folder (a fine-tuning run's <output>/model) or a Hugging Face Hub repository holding one. Inputs:
videos (--backend: the estimators of `slp-curate extract`), pose files (.pose, MMPose JSON, .npy / .npz: COCO-WholeBody
133, MediaPipe Holistic or OpenPose, or the 79-point .pose of `slp-curate export-pose`), shards (--key: one sample;
without: every sample), folders (searched for all of these) and list files (.txt / .list, one path a line).

The output follows the head's task: ISLR the top-k glosses with probabilities, CSLR the gloss sequence, SLT the
sentence (beam search), retrieval the best matches among --texts, or the clips ranked for --text. Each prediction is
printed; --out writes them as JSON with the counts. In a batch (a folder, a list, a whole shard, several inputs) an
input that cannot be read is one line on stderr and in the JSON's `errors`, and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from slp.cli_errors import ArgumentParser, UserError, read_user_text, run_cli
from slp.pose.readers import POSE_FORMATS

PROG = "slp-predict"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="videos, pose files, shards, folders or list files")
    parser.add_argument("--model", required=True, help="head folder (<output>/model of slp-finetune) or Hub id")
    parser.add_argument("--revision", help="Hub revision of --model (default: main)")
    parser.add_argument("--key", help="the sample of a shard input (default: every sample of the shard)")
    parser.add_argument("--out", help="write the predictions and counts as JSON here")
    parser.add_argument("--render", help="an animation (.gif / .mp4) of the pose with the prediction as caption; a "
                                         "folder of GIFs in a batch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda, cuda:1… (default: cuda when a GPU is visible)")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per forward pass (default: 16)")
    parser.add_argument("--top-k", type=int, default=5, help="ISLR classes / retrieval matches kept (default: 5)")
    parser.add_argument("--language", help="SLT: the output language; retrieval: the sentences' (default: the "
                                           "head's training language)")
    parser.add_argument("--texts", help="retrieval: a file of candidate sentences, one a line")
    parser.add_argument("--text", help="retrieval: rank the input clips for this sentence")
    video = parser.add_argument_group("videos")
    video.add_argument("--backend", help="pose estimator for video inputs: mediapipe, rtmlib, mmpose, or "
                                         "package.module:factory (see slp-curate extract)")
    video.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="a backend constructor option (device=cuda, mode=balanced…); repeatable")
    video.add_argument("--mediapipe-python", help="the Python of MediaPipe's venv (default: .venv-mediapipe)")
    video.add_argument("--poses-out", help="keep the extracted .pose files here (default: a temporary folder)")
    poses = parser.add_argument_group("pose files")
    poses.add_argument("--format", default="auto", choices=("auto", *(f for f in POSE_FORMATS if f != "pickle")),
                       help="pose file format (default: from the suffix; openpose_json: a folder is one sequence)")
    poses.add_argument("--fps", type=float, help="for pose files that record no fps (MMPose JSON, .npy)")
    poses.add_argument("--width", type=int, help="for pose files that record no frame size (MMPose JSON, .npy)")
    poses.add_argument("--height", type=int, help="for pose files that record no frame size")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible here (use --device cpu)")
    return device


def _videos(args: argparse.Namespace):
    """The video extractor, or None without --backend."""
    if not args.backend:
        if args.option or args.mediapipe_python or args.poses_out:
            raise UserError("--option, --mediapipe-python and --poses-out apply to videos: give --backend")
        return None
    from data_curation.extract import backend_options
    from finetune.predict import VideoPoses
    from slp.extract.backends import BackendSpec

    options = backend_options(argparse.Namespace(backend=args.backend, option=args.option, device=None,
                                                  mediapipe_python=args.mediapipe_python))
    return VideoPoses(BackendSpec(args.backend, options), args.poses_out)


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    device = _device(args.device)
    from finetune.export import load_finetuned
    from finetune.predict import PredictInput, Predictor, expand_inputs, load_clip, run_predictions

    items, batch = expand_inputs(args.inputs, args.key, args.format)
    if not items:
        raise UserError(f"{' '.join(args.inputs)}: no video, pose file or shard there")
    if any(isinstance(i, PredictInput) and i.kind == "video" for i in items) and not args.backend:
        raise UserError("video inputs need a pose estimator: give --backend (mediapipe, rtmlib, mmpose)")
    model = load_finetuned(args.model, revision=args.revision)
    retrieval = model.task == "retrieval"
    if not retrieval and (args.texts or args.text):
        raise UserError(f"--texts / --text: {args.model} is a {model.task!r} head, not a retrieval head")
    if retrieval and bool(args.texts) == bool(args.text):
        raise UserError("a retrieval head needs either --texts FILE (candidate sentences) or --text SENTENCE")
    predictor = Predictor(model, device=device, top_k=args.top_k, language=args.language)
    if args.texts:
        predictor.set_texts(read_user_text(args.texts, "--texts").splitlines())
    render_dir = Path(args.render) if args.render and batch else None

    def render(item: PredictInput) -> Path | None:
        if not args.render:
            return None
        return render_dir / f"{_file_name(item)}.gif" if render_dir is not None else Path(args.render)

    videos = _videos(args)

    def load(item: PredictInput):
        return load_clip(item, videos=videos, pose_format=args.format, fps=args.fps, width=args.width,
                         height=args.height)

    from slp.extract.backends import BackendUnavailable

    try:
        summary = run_predictions(predictor, items, load, batch_size=args.batch_size, query=args.text, render=render,
                                  progress=batch and not args.no_progress,
                                  report=(lambda message: tqdm.write(f"{PROG}: {message}", file=sys.stderr))
                                  if batch else None)  # one input: its problem is the command's error below
    except BackendUnavailable as exc:
        raise UserError(f"--backend {args.backend}: {exc}") from None
    finally:
        if videos is not None:
            videos.close()
    if not batch and summary["errors"]:
        raise UserError(summary["errors"][0]["error"])
    summary["model"] = str(args.model)
    if args.out:
        from slp.data.shards import write_summary

        write_summary(args.out, summary)
        print(f"wrote {args.out}")
    _print(summary, model.task)


def _file_name(item) -> str:
    """The file name (without suffix) of an input's render in a batch folder: its file name, and shard key."""
    stem = Path(item.path).stem
    return f"{stem}_{item.key}" if item.key else stem


def _print(summary: dict, task: str) -> None:
    from finetune.predict import describe

    if "query" in summary:
        print(f"clips ranked for {json.dumps(summary['query'], ensure_ascii=False)}:")
    for record in summary["predictions"]:
        line = describe(task, record) if "query" not in summary else f"#{record['rank']} ({record['score']:.3f})"
        print(f"{record['input']}: {line}" + (f"  [render: {record['render']}]" if "render" in record else ""))
    if summary["inputs"] > 1 or summary["failed"]:
        print(f"{summary['inputs']} inputs: {summary['predicted']} predicted, {summary['failed']} failed "
              f"({summary['inputs_per_s']} inputs/s on {summary['device']})")


def main(argv: list[str] | None = None) -> None:
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main(sys.argv[1:])
