"""slp-predict: a fine-tuned head's predictions on videos, pose files and shard samples.

examples:
  slp-predict --model runs/finetune/islr_wlasl/model clip.pose  # ISLR: top-5 glosses
  slp-predict --model ORG/NAME clip.mp4 --backend mediapipe --render clip.gif  # a video, a Hub head, a GIF
  slp-predict --model DIR shards/wlasl-000000.tar --key wlasl_00335 --out prediction.json
  slp-predict --model DIR poses/ --out predictions.json --render renders/  # batch: a folder (or a list file)
  slp-predict --model RETRIEVAL_DIR clip.pose --texts sentences.txt  # the best of these sentences
  slp-predict --model RETRIEVAL_DIR clips/ --text "The weather is nice today."  # the clips ranked for a sentence

--model is a head folder (a fine-tuning run's <output>/model) or a Hugging Face Hub repository holding one.
Inputs: videos (--backend: the estimators of slp-curate extract), pose files (.pose, MMPose JSON, .npy / .npz:
COCO-WholeBody 133, MediaPipe Holistic or OpenPose, or the 79-point .pose of slp-curate export-pose), shards (--key:
one sample; without: every sample), folders (searched for all of these) and list files (.txt / .list, one path a
line).

The output follows the head's task: ISLR the top-k glosses with probabilities, CSLR the gloss sequence, SLT the
sentence (beam search), retrieval the best matches among --texts, or the clips ranked for --text. Each prediction is
printed; --out writes them as JSON with the counts.

exit status: 0 when every input was predicted; 1 in a batch (a folder, a list, a whole shard, several inputs) where
some input could not be read: each is one line on stderr and in the JSON's errors, the rest goes on and the summary
is written first; 2 for a mistake in the options or in a file named up front (one line naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slp.cli_errors import ArgumentParser, UserError, folder_problem, read_user_text, run_cli

PROG = "slp-predict"
#: --format's choices: the formats of slp.pose.readers.POSE_FORMATS but pickle (it runs code when loaded), written
#: out so that --help imports no reader (slp.pose loads torch); tests/test_cli_first_hour.py keeps the two equal.
POSE_FILE_FORMATS = ("auto", "pose", "mmpose_json", "npy", "npz", "openpose_json", "asl_signs_parquet")
RENDER_SUFFIXES = (".gif", ".mp4")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="videos, pose files, shards, folders or list files")
    parser.add_argument("--model", required=True, help="head folder (<output>/model of slp-finetune) or Hub id")
    parser.add_argument("--revision", help="Hub revision of --model (default: main)")
    parser.add_argument("--key", help="the sample of a shard input (default: every sample of the shard)")
    parser.add_argument("--out", help="write the predictions and counts as JSON here")
    parser.add_argument("--render", help="an animation (.gif / .mp4) of the pose with the prediction as caption and "
                                         "a legend of the part colours, drawn on the video's frames for a video (or "
                                         "a .pose whose source video slp-curate extract recorded); a folder of GIFs "
                                         "in a batch")
    parser.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when a GPU is visible, else cpu)")
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
    poses.add_argument("--format", default="auto", choices=POSE_FILE_FORMATS,
                       help="pose file format (default: from the suffix; openpose_json: a folder is one sequence)")
    poses.add_argument("--fps", type=float, help="for pose files that record no fps (MMPose JSON, .npy)")
    poses.add_argument("--width", type=int, help="for pose files that record no frame size (MMPose JSON, .npy)")
    poses.add_argument("--height", type=int, help="for pose files that record no frame size")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_arguments(args: argparse.Namespace) -> list[str]:
    """The mistakes that need no model code: numbers out of range, options that do not go together, the files and
    folders named that are not there or not of their kind. Returns the lines of --texts (empty without)."""
    for option, value in (("--batch-size", args.batch_size), ("--top-k", args.top_k), ("--fps", args.fps),
                          ("--width", args.width), ("--height", args.height)):
        if value is not None and value <= 0:
            raise UserError(f"{option} {value}: must be positive")
    if args.texts and args.text:
        raise UserError("give either --texts FILE (candidate sentences) or --text SENTENCE, not both")
    if not args.backend and (args.option or args.mediapipe_python or args.poses_out):
        raise UserError("--option, --mediapipe-python and --poses-out apply to videos: give --backend")
    if Path(args.model).exists() and (problem := folder_problem(args.model)):  # (else a folder or a Hub id)
        raise UserError(f"--model {args.model}: {problem} (a head folder: a fine-tuning run's <output>/model)")
    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: is a folder (give the JSON file to write)")
    if args.poses_out and Path(args.poses_out).exists() and (problem := folder_problem(args.poses_out)):
        raise UserError(f"--poses-out {args.poses_out}: {problem}")
    for raw in args.inputs:
        if not Path(raw).exists():
            raise UserError(f"{raw}: no such file or folder")
    return read_user_text(args.texts, "--texts").splitlines() if args.texts else []


def check_render(render: str | None, batch: bool) -> Path | None:
    """The folder of a batch's renders (None: one input, or no --render); a render path of the wrong kind is
    refused before anything is predicted."""
    if not render:
        return None
    path = Path(render)
    if batch:
        if path.exists() and (problem := folder_problem(path)):
            raise UserError(f"--render {render}: {problem} (a batch renders one GIF per input into a folder)")
        return path
    if path.is_dir():
        raise UserError(f"--render {render}: is a folder (one input renders to a .gif or .mp4 file)")
    if path.suffix.lower() not in RENDER_SUFFIXES:
        raise UserError(f"--render {render}: animation format {path.suffix!r} not supported (use .gif or .mp4)")
    return None


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
        return None
    from data_curation.extract import backend_options
    from finetune.predict import VideoPoses
    from slp.extract.backends import BackendSpec

    options = backend_options(argparse.Namespace(backend=args.backend, option=args.option, device=None,
                                                  mediapipe_python=args.mediapipe_python))
    return VideoPoses(BackendSpec(args.backend, options), args.poses_out)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    texts = check_arguments(args)
    # Only now the model code (torch, transformers, accelerate): a mistake above is reported at once.
    from tqdm import tqdm

    from finetune.export import load_finetuned
    from finetune.predict import PredictInput, Predictor, expand_inputs, load_clip, run_predictions

    device = _device(args.device)
    items, batch = expand_inputs(args.inputs, args.key, args.format)
    if not items:
        raise UserError(f"{' '.join(args.inputs)}: no video, pose file or shard there")
    if len(args.inputs) == 1 and not any(isinstance(i, PredictInput) for i in items):
        raise UserError(str(items[0]))  # the one shard named holds no sample that reads: the file is the mistake
    if any(isinstance(i, PredictInput) and i.kind == "video" for i in items) and not args.backend:
        raise UserError("video inputs need a pose estimator: give --backend (mediapipe, rtmlib, mmpose)")
    render_dir = check_render(args.render, batch)
    model = load_finetuned(args.model, revision=args.revision)
    retrieval = model.task == "retrieval"
    if not retrieval and (args.texts or args.text):
        raise UserError(f"--texts / --text: {args.model} is a {model.task!r} head, not a retrieval head")
    if retrieval and not (args.texts or args.text):
        raise UserError("a retrieval head needs either --texts FILE (candidate sentences) or --text SENTENCE")
    predictor = Predictor(model, device=device, top_k=args.top_k, language=args.language)
    if args.texts:
        predictor.set_texts(texts)

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
    return 1 if summary["failed"] else 0  # a batch tool's convention: some input failed, after the summary


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
        render = ""
        if "render" in record:
            on = f", on {record['render_video']}" if "render_video" in record else ""
            render = f"  [render: {record['render']}{on}]"
        print(f"{record['input']}: {line}{render}")
    if summary["inputs"] > 1 or summary["failed"]:
        print(f"{summary['inputs']} inputs: {summary['predicted']} predicted, {summary['failed']} failed "
              f"({summary['inputs_per_s']} inputs/s on {summary['device']})")


def main(argv: list[str] | None = None) -> None:
    status = run_cli(_main, argv, prog=PROG)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
