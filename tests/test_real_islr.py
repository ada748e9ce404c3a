"""The real-signer ISLR benchmark (benchmarks/real_islr.py): the landmark conversion's hand sides, the
signer-independent split, and (on ../shared/realdata, slow) a short run that writes its table, JSON and figure, reuses
its runs, and shows that slp pre-trained on other glosses beats a plain baseline on held-out real signers."""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from benchmarks import real_islr
from finetune.data import load_split
from slp.data.schema import validate_sample
from slp.pose.layout import BODY, FACE, LEFT_HAND, MOUTH, RIGHT_HAND
from tests.margins import LEARNING_SEED, assert_margin, learning_threads

pytestmark = pytest.mark.longest  # the short run's fixture takes minutes

RIGHT_WRIST, LEFT_WRIST = RIGHT_HAND.start, LEFT_HAND.start


def _slot(wrist_x: float, y: float = 0.5) -> np.ndarray:
    """A hand of 21 points at x = wrist_x + k / 100 (so each point is told apart), y fixed."""
    return np.stack([wrist_x + np.arange(21) / 100, np.full(21, y)], -1)


def test_hand_sides_follow_the_image_not_the_detection_order():
    none = np.full((21, 2), real_islr.MISSING)
    frames = [
        (_slot(0.6), _slot(0.2)),  # two hands, the right one (image left) in slot 1
        (_slot(0.25), _slot(0.65)),  # two hands, slots swapped
        (_slot(0.43), none),  # one hand right of the midline (median of 0.4 and 0.45: 0.425) → left hand
        (_slot(0.41), none),  # … and just left of it → right hand (a midline at 0.5 would make both right hands)
        (none, _slot(0.7)),  # one hand in slot 1, right of the midline → left hand
        (none, none),
    ]
    right, left = real_islr.hands_by_side(np.array(frames, dtype=np.float16))
    assert right.shape == left.shape == (6, 21, 3)
    np.testing.assert_allclose(right[:, 0, 0], [0.2, 0.25, 0, 0.41, 0, 0], atol=1e-3)
    np.testing.assert_allclose(left[:, 0, 0], [0.6, 0.65, 0.43, 0, 0.7, 0], atol=1e-3)
    np.testing.assert_array_equal(right[:, :, 2], np.array([1, 1, 0, 1, 0, 0])[:, None].repeat(21, 1))
    np.testing.assert_array_equal(left[:, :, 2], np.array([1, 1, 1, 0, 1, 0])[:, None].repeat(21, 1))
    assert (right[2] == 0).all() and (left[5] == 0).all()  # missing points: confidence and coordinates 0

    pose = real_islr.shard_pose(np.array(frames, dtype=np.float16))
    assert pose.shape == (6, 79, 3) and pose.dtype == np.float16
    np.testing.assert_allclose(pose[:, RIGHT_HAND].astype(np.float32), right, atol=1e-3)
    np.testing.assert_allclose(pose[:, LEFT_HAND].astype(np.float32), left, atol=1e-3)
    # The body's wrists (points 9: left, 10: right) are the hands' roots; the rest of the body and the face are missing.
    np.testing.assert_array_equal(pose[:, BODY][:, 9], pose[:, LEFT_HAND][:, 0])
    np.testing.assert_array_equal(pose[:, BODY][:, 10], pose[:, RIGHT_HAND][:, 0])
    assert (pose[:, BODY][:, :9] == 0).all()
    for part in (FACE, MOUTH):
        assert (pose[:, part] == 0).all()


def test_report_names_tell_budgets_and_overrides_apart():
    def name(*overrides: str, steps: int = 1000, lambda_stc: float = 0.1) -> str:
        args = argparse.Namespace(steps=steps, epochs=40, lambda_stc=lambda_stc, pretrain_overrides=list(overrides),
                                  finetune_overrides=[])
        return real_islr.report_name([100, 300], args)

    assert name() == "real_islr-wlasl100+300-1000steps-40epochs-lambda0.1"
    assert name(steps=2500, lambda_stc=1.0) == "real_islr-wlasl100+300-2500steps-40epochs-lambda1"
    mask_05, mask_06 = name("loss.mask_ratio=0.5"), name("loss.mask_ratio=0.6")
    assert mask_05.startswith(name() + "-") and len(mask_05) == len(name()) + 9 and mask_05 != mask_06


def test_pretrain_overrides_follow_the_variant_s_own(tmp_path):
    setup = real_islr.Setup(tmp_path, "tiny_mbart", 64, 10, 8, 0, ("loss.lambda_stc=0.1", "loss.mask_ratio=0.5"), 1,
                            1.0, (), 4, {}, {})
    cfg = real_islr.pretrain_config({"shards": [str(tmp_path / "*.tar")]}, real_islr.VARIANTS["stc"], setup, tmp_path)
    assert (cfg.loss.use_pr, cfg.loss.use_stc, cfg.loss.lambda_stc, cfg.loss.mask_ratio) == (False, True, 0.1, 0.5)


def test_cached_pre_trainings_are_found_however_out_is_spelt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def folder(out: Path, text_model: str | None = None) -> str:
        setup = real_islr.Setup(out, text_model or str(out / "tiny_mbart_word-0123abcd"), 64, 10, 8, 0, (), 1, 1.0,
                                (), 4, {}, {100: {"settings": {"classes": [100, 2000]}}})
        return real_islr.pretrain_folder(100, real_islr.VARIANTS["pr+stc"], setup).name

    assert folder(Path("runs")) == folder(tmp_path / "runs") == folder(Path("elsewhere"))
    assert folder(Path("runs"), "facebook/mbart-large-cc25") != folder(Path("runs"))  # another text model


def test_side_by_side_seeds_of_a_variant_wait_for_its_one_pre_training(tmp_path, monkeypatch, capsys):
    """Two jobs of one variant (two seeds, ``--jobs 2``) that start together: the first pre-trains, the second waits
    on the folder's lock and then reads the first's record. Two threads stand for the two processes: ``flock`` locks
    each opening of the file on its own, in one process as in two."""
    pre_trained, pre_training = [], threading.Event()

    def pretrain_into(folder: Path, subset, variant, setup) -> None:
        pre_trained.append(folder)
        pre_training.set()
        time.sleep(0.5)  # the second job asks meanwhile
        (folder / "pretrain.json").write_text(json.dumps({"seed": 0, "seconds": 0.5}))

    monkeypatch.setattr(real_islr, "pretrain_into", pretrain_into)
    setup = real_islr.Setup(tmp_path, "tiny_mbart", 64, 10, 8, 0, (), 1, 1.0, (), 4, {}, {100: {"settings": {}}})
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(real_islr.pretrain_variant, 100, real_islr.VARIANTS["pr+stc"], setup)
        assert pre_training.wait(30)
        second = pool.submit(real_islr.pretrain_variant, 100, real_islr.VARIANTS["pr+stc"], setup)
        records = first.result(), second.result()
    assert len(pre_trained) == 1 and records[0] == records[1]
    assert records[0] == {"seed": 0, "seconds": 0.5, "folder": str(pre_trained[0])}
    assert f"waiting for the pre-training in {pre_trained[0]}: another process is running it" in capsys.readouterr().out


def _assert_every_gloss_in_train_and_test(clips, split):
    signers = split.signers
    assert not (set(signers["train"]) & set(signers["test"]) or set(signers["train"]) & set(signers["dev"])
                or set(signers["dev"]) & set(signers["test"]))
    for gloss in {g for g, _ in clips} - set(split.dropped):
        for name in ("train", "test"):
            assert any(g == gloss and s in signers[name] for g, s in clips), (gloss, name)


def test_signer_split_never_takes_a_gloss_s_last_training_clip():
    # Signer 1 covers glosses 0-2 (score 3² / 3; signer 2 ties and has the larger id). Signer 2 would then add glosses
    # 3 and 4 for three clips, the best score, but it holds gloss 0's last training clip: signers 3 and 4 go instead.
    clips = [(0, "1"), (0, "2"), (1, "1"), (1, "5"), (2, "1"), (2, "5"), (3, "2"), (3, "3"), (4, "2"), (4, "4")]
    split = real_islr.signer_independent_split(clips, dev_fraction=0.0)
    assert split.signers == {"train": ["2", "5"], "dev": [], "test": ["1", "3", "4"]} and split.dropped == []
    _assert_every_gloss_in_train_and_test(clips, split)


def test_signer_split_drops_glosses_of_one_signer_and_picks_dev_signers_apart():
    clips = [(0, "1"), (0, "2"), (0, "3"),
             (1, "1"), (1, "2"),
             (2, "2"), (2, "3"), (2, "4"),
             (3, "5"), (3, "5"),  # gloss 3: one signer, cannot be in train and test
             (4, "4"), (4, "6")]
    split = real_islr.signer_independent_split(clips, dev_fraction=0.1)
    assert split.dropped == [3]
    assert split.signers["dev"]  # a tenth of the clips: one signer at least
    assert set(sum(split.signers.values(), [])) == {"1", "2", "3", "4", "6"}  # signer 5 only signed gloss 3
    _assert_every_gloss_in_train_and_test(clips, split)
    assert real_islr.signer_independent_split(clips, dev_fraction=0.1) == split  # deterministic


#: The short run's budget: pre-training steps (one pre-training, seed 0), STC's weight and fine-tuning epochs; a few
#: minutes on 2 cores, and enough for the learning check below (measured at the paper's λ_STC = 1). It runs the two rows
#: that check compares, with the learning tests' seed; a run from scratch has its own, one-epoch test. (Fewer steps
#: fall short: at 200 the margin over the plain GRU was +9.1 ± 3.8 over seeds 0-4, mean - 3 std -2.3; at 150
#: with 8 epochs +6.9 ± 2.7, mean - 3 std -1.2.)
SHORT_STEPS, SHORT_LAMBDA_STC, SHORT_EPOCHS = 300, 1, 10
SHORT_SEEDS = (LEARNING_SEED,)
SHORT_VARIANTS = ("pr+stc", "plain")


def _short_args(realdata, out, *, epochs=SHORT_EPOCHS, variants=SHORT_VARIANTS, more=()):
    return ["--realdata", str(realdata), "--subsets", "100", "--seeds", *map(str, SHORT_SEEDS),
            "--steps", str(SHORT_STEPS), "--lambda-stc", str(SHORT_LAMBDA_STC), "--epochs", str(epochs),
            "--variants", *variants, *more, "--jobs", "2", "--out", str(out)]


@pytest.fixture(scope="module")
def short_run(realdata, tmp_path_factory):
    """(out, summary of the first call, summary of the second call, result files, their mtimes): WLASL100, the
    pre-trained slp's and the plain GRU's runs side by side (--jobs 2), computed on the learning tests' thread
    count."""
    out = tmp_path_factory.mktemp("real_islr")
    args = _short_args(realdata, out)
    with learning_threads():
        first = real_islr.main(args)
    results = sorted(out.glob("runs/100/*/seed*/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    second = real_islr.main(args)
    return out, first, second, results, stamps


@pytest.mark.slow
def test_real_clips_convert_with_hands_on_their_sides(realdata):
    source = real_islr.Source(realdata / real_islr.SOURCE)
    checked = 0
    for video_id in list(source.classes)[:200]:
        sample = real_islr.to_sample(source, video_id, "train")
        validate_sample(sample)
        pose = sample.pose.astype(np.float32)
        assert np.isfinite(pose).all()
        both = (pose[:, RIGHT_WRIST, 2] > 0) & (pose[:, LEFT_WRIST, 2] > 0)
        assert (pose[both, RIGHT_WRIST, 0] <= pose[both, LEFT_WRIST, 0]).all(), video_id
        checked += int(both.any())
        assert sample.meta.text == f"This word is {source.glosses[sample.meta.label]}."
    assert checked > 50  # most clips show two hands somewhere


@pytest.mark.slow
def test_written_split_is_signer_independent_with_every_gloss_in_train_and_test(short_run):
    out, first, *_ = short_run
    shards = [str(out / "data" / "wlasl100" / "shards" / "*.tar")]
    splits = {name: load_split(shards, real_islr.DATASET, name) for name in ("train", "dev", "test")}
    signers = {name: {s.meta.signer for s in samples} for name, samples in splits.items()}
    assert not (signers["train"] & signers["dev"] or signers["train"] & signers["test"]
                or signers["dev"] & signers["test"])
    glosses = {name: {s.meta.label for s in samples} for name, samples in splits.items()}
    assert glosses["train"] == glosses["test"] and glosses["dev"] <= glosses["train"]
    assert len(glosses["test"]) == 100 - len(first["data"]["100"]["dropped_glosses"])
    for name, samples in splits.items():
        assert first["data"]["100"]["splits"][name] == {"clips": len(samples), "signers": len(signers[name]),
                                                        "glosses": len(glosses[name])}


@pytest.mark.slow
def test_short_run_writes_table_json_and_figure_and_reuses_its_runs(short_run):
    out, first, second, results, stamps = short_run
    runs = first["results"]["100"]
    assert set(runs) == set(SHORT_VARIANTS)
    for label, seeds in runs.items():
        assert [run["seed"] for run in seeds] == list(SHORT_SEEDS)
        for run in seeds:
            assert 0 <= run["top1"] <= run["top5"] <= 100
            assert ("probe" in run) == (label != "plain")
            assert ("loss_pr" in run and "loss_stc" in run) == (label == "pr+stc")
    (pretraining,) = out.glob("runs/100/pretrain-pr+stc-*")
    record = json.loads((pretraining / "pretrain.json").read_text())
    for run in runs["pr+stc"]:
        assert (run["loss_pr"], run["loss_stc"], run["pretrain_seed"]) == (record["loss_pr"], record["loss_stc"], 0)
    assert record["steps"] == SHORT_STEPS
    # The word-level stand-in's features: the gloss token tells texts apart, the template's tokens do not.
    side = first["text_side"]
    assert side["example"].startswith("This word is ") and side["tokens"] == len(side["mean_cosine_by_position"])
    assert min(side["mean_cosine_by_position"]) < 0.9 and max(side["mean_cosine_by_position"]) > 0.99
    table = first["tables"]["100"]
    assert "| variant | pre-training | fine-tuned top-1 (%) | fine-tuned top-5 (%) | probe top-1 (%) |" in table
    assert "| pr+stc | PR + STC | " in table and "| plain | " in table and "| pr | " not in table
    stem = f"real_islr-wlasl100-{SHORT_STEPS}steps-{SHORT_EPOCHS}epochs-lambda{SHORT_LAMBDA_STC}"
    assert (out / f"{stem}.png").stat().st_size > 0
    assert json.loads((out / f"{stem}.json").read_text())["results"] == second["results"]
    assert (f"{SHORT_STEPS} pre-training steps of batch 32, λ_STC {SHORT_LAMBDA_STC}, {SHORT_EPOCHS} fine-tuning "
            "epochs") in table
    # The second call read every run back: same results, result files untouched.
    assert len(results) == 2 and second["results"] == first["results"]
    assert [p.stat().st_mtime_ns for p in results] == stamps


@pytest.mark.slow
def test_a_run_from_scratch_ignores_the_encoder_options_meant_for_pre_trained_encoders(realdata, short_run):
    """The scratch row: a fresh encoder, probed and fine-tuned (one epoch here) with the encoder learning as the head
    does (lr scale 1, no freezing, no warm-up), whatever the options given for pre-trained encoders."""
    out, *_ = short_run
    frozen = ("optim.encoder_lr_scale=0.1", "optim.encoder_frozen_epochs=1", "optim.encoder_warmup_epochs=1")
    summary = real_islr.main(_short_args(realdata, out, epochs=1, variants=("scratch",),
                                         more=("--finetune-overrides", *frozen)))
    (run,) = summary["results"]["100"]["scratch"]
    assert "pretrain_seed" not in run and 0 <= run["top1"] <= run["top5"] <= 100 and 0 <= run["probe"] <= 100
    assert "| scratch | none (α = 0) | " in summary["tables"]["100"]
    (metrics,) = out.glob(f"runs/100/scratch-*/seed{LEARNING_SEED}/finetune/metrics.json")
    optim = json.loads(metrics.read_text())["config"]["optim"]
    assert (optim["encoder_lr_scale"], optim["encoder_frozen_epochs"], optim["encoder_warmup_epochs"]) == (1.0, 0, 0)
    assert optim["epochs"] == 1


#: Points of top-1 the pre-trained slp must beat the plain GRU by, per seed (the test's docstring has the measurement).
REQUIRED = 2.0


@pytest.mark.learning
@pytest.mark.slow
def test_pretrained_slp_beats_the_plain_baseline_on_held_out_real_signers(short_run):
    """WLASL100, held-out signers, the short run's budget: slp pre-trained for 300 steps on the other 1,900 glosses'
    clips, then fine-tuned for 10 epochs, against the plain two-hand GRU trained for the same 10 epochs.

    Measured on 1 thread (``python benchmarks/real_islr.py --subsets 100 --seeds 0 1 2 3 4 --steps 300
    --lambda-stc 1 --epochs 10 --variants scratch pr+stc plain``), top-1 % for seeds 0-4:

    - pre-trained slp 48.5 / 46.2 / 47.7 / 47.7 / 40.0;
    - the plain GRU 30.8 / 34.6 / 35.4 / 33.1 / 31.5;
    - slp from scratch 23.1 / 27.7 / 23.1 / 22.3 / 30.0.

    The margin over the plain GRU per seed: +17.7 / +11.6 / +12.3 / +14.6 / +8.5 (mean +12.9, std 3.5). The check
    asks each seed for more than mean - 3 std, rounded down: 2 points."""
    _, first, *_ = short_run
    runs = first["results"]["100"]
    for slp, plain in zip(runs["pr+stc"], runs["plain"]):
        assert slp["seed"] == plain["seed"]
        assert_margin(f"real WLASL100 top-1, held-out signers, seed {slp['seed']}: pre-trained slp vs plain GRU",
                      slp["top1"], plain["top1"], REQUIRED)
