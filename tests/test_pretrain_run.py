"""Two-rank CPU DeepSpeed pre-training on synthetic shards: the loss falls, and kill + resume is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slp.models.alignment import SignTextAlignment, same_text_model
from slp.models.sign_encoder import SignPoseEncoder
from slp.synthetic import SyntheticConfig, write_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
DEEPSPEED = Path(sys.executable).with_name("deepspeed")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain_corpus")
    write_synthetic_corpus(out, SyntheticConfig(num_glosses=12, num_signers=6, repetitions=2, sentences_per_signer=6,
                                                shard_samples=40))
    return out / "shards"


def _command(output: Path, shards: Path, mbart: Path, *extra: str) -> list[str]:
    return [str(DEEPSPEED), "--num_gpus", "2", "--master_port", str(29500 + os.getpid() % 1000),
            "pretrain/run.py", "--config", "configs/pretrain/tiny.yaml", f"output={output}",
            f"data.shards=[{shards}/*.tar]", f"text.name_or_path={mbart}", "optim.max_steps=24",
            "checkpoint.every_steps=12", "data.batch_size=8", *extra]


def _losses(output: Path) -> dict[int, float]:
    """Loss per step from the rank-0 log, which lists every step once (a resumed run drops the killed run's
    steps after its checkpoint before logging them again)."""
    rows = [json.loads(line) for line in (output / "steps.jsonl").read_text().splitlines()]
    steps = [row["step"] for row in rows]
    assert steps == sorted(set(steps)), steps
    return {row["step"]: row["loss"] for row in rows}


def _wait_for_group(pgid: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise TimeoutError(f"process group {pgid} still running")


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shards, tiny_mbart_dir) -> Path:
    """One uninterrupted run of the test command (a checkpoint at step 12): the losses both tests resume to. The
    SIGTERM test's run saves no checkpoint at step 12, so its match also shows that saving one leaves the training
    as it was."""
    output = tmp_path_factory.mktemp("straight")
    _run(_command(output, shards, tiny_mbart_dir))
    return output


def test_two_rank_pretraining_learns_and_resumes_exactly(tmp_path, shards, tiny_mbart_dir, straight):
    losses = _losses(straight)
    assert sorted(losses) == list(range(1, 25))
    first, last = sum(losses[s] for s in range(1, 7)) / 6, sum(losses[s] for s in range(19, 25)) / 6
    assert last < first, f"loss did not fall: {first:.4f} → {last:.4f}"
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["steps"] == 24 and summary["world_size"] == 2
    encoder = SignPoseEncoder.from_pretrained(straight / "encoder")
    assert encoder.output_dim == 256
    assert (straight / "checkpoints" / "step00000012" / "encoder" / "model.safetensors").is_file()
    for export in (straight / "encoder", straight / "checkpoints" / "step00000012" / "encoder"):  # and L_STC's module
        # with a copy of the local text model it was trained against
        assert SignTextAlignment.from_pretrained(export)[1] == str(export / "text_model")
        assert same_text_model(str(export / "text_model"), str(tiny_mbart_dir))
    card = (straight / "encoder" / "README.md").read_text()
    assert "Pre-trained for 24 of 24 optimiser steps on 2 rank(s)." in card and str(straight) not in card
    assert str(tiny_mbart_dir) not in card

    # Kill a second run once its step-12 checkpoint is complete, then resume it with the same command.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed, shards, tiny_mbart_dir), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest.read_text().strip() == "step00000012"
    _run(_command(killed, shards, tiny_mbart_dir, "--resume"))
    resumed = _losses(killed)
    for step in range(13, 25):
        assert abs(resumed[step] - losses[step]) <= 1e-6, (step, resumed[step], losses[step])


def test_sigterm_saves_a_checkpoint_and_the_run_resumes_to_the_same_losses(tmp_path, shards, tiny_mbart_dir,
                                                                           straight):
    losses = _losses(straight)
    # A scheduler pre-empting the job signals the whole process group.
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(_command(stopped, shards, tiny_mbart_dir, "checkpoint.every_steps=1000"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = stopped / "steps.jsonl"
    deadline = time.time() + 300
    while (not log.is_file() or len(log.read_text().splitlines()) < 4) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    _wait_for_group(proc.pid)  # the launcher exits first; the ranks finish their checkpoint after it
    summary = json.loads((stopped / "summary.json").read_text())
    step = summary["steps"]
    assert summary["stopped_early"] and 4 <= step < 24
    assert (stopped / "checkpoints" / "latest").read_text().strip() == f"step{step:08d}"
    _run(_command(stopped, shards, tiny_mbart_dir, "checkpoint.every_steps=1000", "--resume"))
    resumed = _losses(stopped)
    for s in range(step + 1, 25):
        assert abs(resumed[s] - losses[s]) <= 1e-6, (s, resumed[s], losses[s])
