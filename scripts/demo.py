"""The one-command demo (``make demo``): every stage of slp on an embedded default, on CPU.

The procedural synthetic signer corpus written as shards; the nine curation sources in their release formats
(small fixtures) built into shards with rejects and Table II stats; the tiny local mBART stand-in built from its texts
and loaded through the real ``from_pretrained`` path; the real sample poses of ``../shared/realdata`` (when that
folder is beside the checkout) converted to the 79-point shard format; one real and one synthetic sample
rendered; the ``tiny`` encoder pre-trained with DeepSpeed on 2 local ranks and exported; ISLR fine-tuned from it
with its metrics table and its self-contained head folder; ``slp-predict`` with that folder on the real FOOTBALL.mp4
through MediaPipe, its GIF drawn on the video's frames (the MMPose pose without MediaPipe's venv, a synthetic test
sample without the real data). Prints what it did, writes ``<out>/demo_summary.json`` and ends with the prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from slp.config import load_config  # noqa: E402
from slp.data.schema import Sample, SampleMeta  # noqa: E402
from slp.data.shards import ReadStats, iter_samples, write_shard, write_summary  # noqa: E402
from slp.pose.readers import read_pose, to_shard_pose  # noqa: E402
from slp.render import render_animation, render_contact_sheet  # noqa: E402
from slp.synthetic import SyntheticConfig, corpus_texts, write_synthetic_corpus  # noqa: E402
from slp.text import FrozenTextEncoder  # noqa: E402
from slp.text.tiny import build_tiny_mbart  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REALDATA = REPO.parent / "shared" / "realdata"
# Real MMPose COCO-WholeBody sequences: (.pose file, MMPose predictions JSON, frame width, height).
REAL_SAMPLES = {"FOOTBALL": (640, 360), "SOUP": (320, 240)}


def real_samples(realdata: Path, out: Path) -> dict:
    """Convert the real MMPose samples (both sources) to shard samples and check they agree."""
    poses = realdata / "poses"
    samples, agreement = [], {}
    for name, (width, height) in REAL_SAMPLES.items():
        from_pose = read_pose(poses / f"{name}.mmpose_wholebody133.pose")
        from_json = read_pose(poses / f"{name}.mmpose_wholebody133.predictions.json", fps=from_pose.fps,
                              width=width, height=height)
        a, b = to_shard_pose(from_pose), to_shard_pose(from_json)
        agreement[name] = float(abs(a.astype("float32") - b.astype("float32")).max())
        meta = SampleMeta(dataset="realdata", split="test", sign_language="ASL", text_language="en",
                          source_id=name, fps=from_pose.fps, width=width, height=height,
                          frame_end=from_pose.num_frames, text=f"This word is {name.lower()}.",
                          gloss=name, paired=True)
        samples.append(Sample(name, a, meta))
    info = write_shard(out / "real" / "realdata-000000.tar", samples)
    return {"shard": info.path, "samples": info.num_samples, "max_difference_pose_vs_json": agreement}


def extract_real_video(realdata: Path, out: Path) -> dict:
    """FOOTBALL.mp4 through the MediaPipe backend (when its venv is installed: `make mediapipe-venv`), rendered
    as a contact sheet beside MMPose's points for the same frames."""
    from PIL import Image

    from slp.extract.backends import find_mediapipe_python

    video = realdata / "videos" / "FOOTBALL.mp4"
    if not video.is_file() or find_mediapipe_python() is None:
        reason = f"{video} not found" if not video.is_file() else "no MediaPipe venv (make mediapipe-venv)"
        print(f"   skipped: {reason}")
        return {"skipped": reason}
    (out / "extract").mkdir(parents=True, exist_ok=True)
    (out / "extract" / "videos.txt").write_text(f"{video.resolve()}\n")
    subprocess.run([sys.executable, "-m", "data_curation.cli", "extract", "--backend", "mediapipe", "--videos",
                    str(out / "extract" / "videos.txt"), "--out", str(out / "extract" / "poses"), "--no-progress"],
                   check=True)
    if not (out / "extract" / "poses" / "FOOTBALL.pose").is_file():
        failure = (out / "extract" / "poses" / "failures.jsonl").read_text().strip()
        print(f"   extraction failed: {failure}")
        return {"failed": failure}
    extracted = read_pose(out / "extract" / "poses" / "FOOTBALL.pose")
    mmpose = read_pose(realdata / "poses" / "FOOTBALL.mmpose_wholebody133.pose")
    sheets = [render_contact_sheet(to_shard_pose(seq), out / "render" / f"football_{name}_sheet.png",
                                   width=seq.width, height=seq.height, columns=3, frames=6)
              for name, seq in (("mediapipe", extracted), ("mmpose", mmpose))]
    left, right = (Image.open(p) for p in sheets)
    beside = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    beside.paste(left, (0, 0))
    beside.paste(right, (left.width, 0))
    path = out / "render" / "football_mediapipe_beside_mmpose.png"
    beside.save(path)
    print(f"   {extracted.num_frames} frames extracted ({extracted.estimator}); wrote {path} "
          f"(left: MediaPipe converted to COCO-WholeBody, right: MMPose)")
    return {"pose": str(out / "extract" / "poses" / "FOOTBALL.pose"), "frames": extracted.num_frames,
            "estimator": extracted.estimator, "render": str(path)}


def predict_example(realdata: Path, out: Path, model: Path) -> dict:
    """``slp-predict`` with the fine-tuned head folder on the real FOOTBALL ``.pose`` (a synthetic test sample of the
    shards without the real data), with its JSON and captioned GIF; returns where they are and the printed line."""
    from slp.extract.backends import find_mediapipe_python

    video = realdata / "videos" / "FOOTBALL.mp4"
    football = realdata / "poses" / "FOOTBALL.mmpose_wholebody133.pose"
    if video.is_file() and find_mediapipe_python() is not None:
        target = [str(video), "--backend", "mediapipe"]
        print("   the real FOOTBALL.mp4 through MediaPipe, rendered on its own frames: the head knows only the "
              "synthetic corpus's glosses")
    elif football.is_file():
        target = [str(football)]
        print("   the real FOOTBALL pose (MMPose): the head knows only the synthetic corpus's glosses")
    else:
        shard, key = next((str(path), s.key) for path in sorted((out / "synthetic" / "shards").glob("*isolated*.tar"))
                          for s in iter_samples([path]) if s.meta.split == "test")
        target = [shard, "--key", key]
        print(f"   {realdata} not found: a synthetic test sample ({key}) instead")
    paths = {"json": str(out / "predict" / "prediction.json"), "gif": str(out / "predict" / "prediction.gif")}
    command = [sys.executable, "-m", "finetune.predict_cli", "--model", str(model), *target, "--out", paths["json"],
               "--render", paths["gif"]]
    print(f"   slp-predict --model {model} {' '.join(target)} --out {paths['json']} --render {paths['gif']}")
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return {**paths, "printed": done.stdout.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--realdata", default=str(DEFAULT_REALDATA), help="../shared/realdata, if you have it")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.time()
    summary: dict = {}

    print("== 1. synthetic signer corpus → shards")
    cfg = load_config(SyntheticConfig, REPO / "configs" / "synthetic" / "easy.yaml")
    corpus = write_synthetic_corpus(out / "synthetic", cfg)
    summary["synthetic"] = {k: corpus[k] for k in ("samples", "by_kind_and_split", "shards", "frames")}
    stats = ReadStats()
    first = next(s for s in iter_samples(sorted((out / "synthetic" / "shards").glob("*.tar")), stats)
                 if s.key.startswith("synthetic_sentence"))
    print(f"   {corpus['samples']} samples, {corpus['frames']} frames: {corpus['by_kind_and_split']}")

    print("== 1b. curation: the nine sources in their release formats (small fixtures) → shards, rejects, stats")
    fixtures = out / "curation"
    curate = [str(Path(sys.executable).with_name("slp-curate"))]
    subprocess.run([*curate, "fixtures", "--out", str(fixtures)], check=True)
    subprocess.run([*curate, "build", "--config", str(fixtures / "curate.yaml"), "workers=2"], check=True)
    subprocess.run([*curate, "stats", str(fixtures / "build")], check=True)
    built = json.loads((fixtures / "build" / "summary.json").read_text())
    summary["curation"] = {"totals": built["totals"], "reconciled": built["reconciled"],
                           "stats": str(fixtures / "build" / "stats.json"),
                           "histogram": str(fixtures / "build" / "duration_histogram.png")}

    print("== 2. tiny mBART stand-in, loaded through FrozenTextEncoder.from_pretrained")
    mbart_dir = build_tiny_mbart(out / "tiny_mbart", corpus_texts(cfg))
    encoder = FrozenTextEncoder.from_pretrained(mbart_dir)
    features, mask = encoder.encode([first.meta.text], [first.meta.text_language])
    ids, _ = encoder.tokenize([first.meta.text], [first.meta.text_language])
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids[0].tolist())
    print(f"   {first.meta.text!r} → {tokens} → features {tuple(features.shape)}")
    summary["text_encoder"] = {"dir": str(mbart_dir), "d_model": encoder.d_model, "example_tokens": tokens}

    print("== 3. rendering")
    renders = {
        "synthetic": [str(render_animation(first.pose, out / "render" / "synthetic.gif", width=cfg.width,
                                           height=cfg.height, fps=cfg.fps)),
                      str(render_contact_sheet(first.pose, out / "render" / "synthetic_sheet.png",
                                               width=cfg.width, height=cfg.height))],
    }
    realdata = Path(args.realdata)
    if (realdata / "poses").is_dir():
        summary["real"] = real_samples(realdata, out)
        football = next(iter_samples([summary["real"]["shard"]]))
        m = football.meta
        # On the video's own frames when it is there, so the points can be checked against the signer.
        video = realdata / "videos" / "FOOTBALL.mp4"
        on_video = {"video": video, "fps": m.fps} if video.is_file() else {}
        renders["real"] = [
            str(render_animation(football.pose, out / "render" / "football.gif", width=m.width, height=m.height,
                                 fps=m.fps, video=on_video.get("video"))),
            str(render_contact_sheet(football.pose, out / "render" / "football_sheet.png", width=m.width,
                                     height=m.height, **on_video)),
        ]
        print(f"   real samples: {summary['real']}")
    else:
        print(f"   {realdata} not found: real sample conversion skipped (it is research data, not shipped)")
    summary["renders"] = renders
    for paths in renders.values():
        for p in paths:
            print(f"   wrote {p}")

    print("== 3b. poses from a real video: `slp-curate extract --backend mediapipe`, beside MMPose's points")
    summary["extract"] = extract_real_video(realdata, out)

    print("== 4. pre-training `tiny` with DeepSpeed on 2 local ranks (about a minute on 2 CPU cores)")
    pretrain_out = out / "pretrain"
    subprocess.run(
        [str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", "2", str(REPO / "pretrain" / "run.py"),
         "--config", str(REPO / "configs" / "pretrain" / "tiny.yaml"), f"output={pretrain_out}",
         f"data.shards=[{out / 'synthetic' / 'shards'}/*.tar]", f"text.name_or_path={mbart_dir}"],
        check=True,
    )
    run = json.loads((pretrain_out / "summary.json").read_text())
    steps = [json.loads(line) for line in (pretrain_out / "steps.jsonl").read_text().splitlines()]
    summary["pretrain"] = {"steps": run["steps"], "samples_per_s": round(run["samples_per_s"], 1),
                           "first_loss": steps[0]["loss"], "final": run["final"],
                           "encoder": str(pretrain_out / "encoder")}
    print(f"   {run['steps']} steps, {run['samples_per_s']:.1f} samples/s; loss {steps[0]['loss']:.3f} → "
          f"{run['final']['loss']:.3f} (L_PR {run['final']['loss_pr']:.3f}, L_STC {run['final']['loss_stc']:.3f}); "
          f"encoder exported to {pretrain_out / 'encoder'}")

    print("== 5. ISLR fine-tuning from the pre-trained encoder (held-out synthetic signers)")
    islr_out = out / "finetune_islr"
    subprocess.run(
        [sys.executable, "-m", "finetune.cli", "--task", "islr", "--config",
         str(REPO / "configs" / "finetune" / "islr" / "synthetic.yaml"), "--pretrained", str(pretrain_out / "encoder"),
         f"data.shards=[{out / 'synthetic' / 'shards'}/*.tar]", f"output={islr_out}"],
        check=True,
    )
    islr = json.loads((islr_out / "metrics.json").read_text())
    summary["finetune_islr"] = {"dev": islr["dev"], "test": islr["test"], "checkpoint": islr["checkpoint"],
                                "model": islr["model"]}

    print("== 6. slp-predict: the ISLR head folder on a clip it has never seen")
    summary["predict"] = predict_example(realdata, out, Path(islr["model"]))

    summary["seconds"] = round(time.time() - start, 1)
    write_summary(out / "demo_summary.json", summary)
    print(f"== done in {summary['seconds']} s; summary: {out / 'demo_summary.json'}; the prediction:")
    print(summary["predict"]["printed"])


if __name__ == "__main__":
    main()
