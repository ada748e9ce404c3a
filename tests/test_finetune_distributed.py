"""Fine-tuning at any number of processes: every rank runs the same number of steps whatever the batch count, the
training batches (their order and ISLR's random frames) are a function of the seed, and (slow) for each head a
2-process run on CPU finishes on a batch count that 2 does not divide, and its --eval-only metrics with 2 processes
equal those of 1 process exactly."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.data_loader import prepare_data_loader

from finetune import islr, trainer
from finetune.config import FinetuneConfig
from finetune.data import load_split
from finetune.tasks import task_module
from finetune.trainer import build_encoder, train_loader
from slp.config import load_config
from slp.synthetic import SyntheticConfig, write_synthetic_corpus
from tests.conftest import REPO_ROOT

# 4 training signers, one each for dev and test: 24 / 6 / 6 isolated signs and 20 / 5 / 5 sentences.
CORPUS = SyntheticConfig(num_glosses=6, num_signers=6, dev_signers=1, test_signers=1, repetitions=1,
                         sentences_per_signer=5, shard_samples=100)
# A small encoder: the runs test the distributed machinery, not what it learns.
TINY_ENCODER = ["encoder.embedding.channels=[8]", "encoder.embedding.manual_dim=32",
                "encoder.embedding.non_manual_dim=32", "encoder.manual.width=32", "encoder.manual.num_layers=1",
                "encoder.non_manual.width=32", "encoder.non_manual.num_layers=1"]
LAUNCH_TIMEOUT_S = 600  # a rank stuck in a collective fails the test instead of hanging CI


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distributed") / "corpus"
    write_synthetic_corpus(out, CORPUS)
    return out


def _epochs(cfg: FinetuneConfig, train, process_index: int = 0, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    loader = train_loader(cfg, train, islr.ISLRCollator(cfg.data.num_frames, train=True), process_index)
    return [batch for _ in range(epochs) for batch in loader]


def test_training_batches_are_a_function_of_the_seed(corpus):
    """Order and random frames repeat with the seed (two worker processes); another seed or another rank's workers
    draw other frames, while every rank sees the same order."""
    cfg = load_config(FinetuneConfig, "configs/finetune/islr/synthetic.yaml",
                      [f"data.shards=[{corpus}/shards/*.tar]", "data.num_frames=8", "data.num_workers=2",
                       "optim.batch_size=5"])
    train = load_split(cfg.data.shards, "synthetic", "train", islr.keep)
    assert min(len(s.pose) for s in train) > 8  # every clip's frames are drawn
    first, again = _epochs(cfg, train), _epochs(cfg, train)
    assert len(first) == 2 * math.ceil(len(train) / 5)
    for a, b in zip(first, again):
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["pose"], b["pose"])
    assert not torch.equal(first[0]["labels"], first[len(first) // 2]["labels"])  # reshuffled every epoch
    other_rank = _epochs(cfg, train, process_index=1)  # the same batches drawn by rank 1's workers: other frames
    assert not any(torch.equal(a["pose"], b["pose"]) for a, b in zip(first, other_rank))
    cfg.seed += 1
    assert not all(torch.equal(a["labels"], b["labels"]) for a, b in zip(first, _epochs(cfg, train)))


@pytest.mark.parametrize("batch_size", [5, 4])  # 24 samples: 5 batches (not divisible by 2) and 6
def test_prepared_loaders_deal_every_rank_its_turn_of_one_order_and_the_same_number_of_steps(corpus, batch_size):
    """What accelerate makes of the training loader on 2 ranks: rank r gets batches r, r + 2, … of the one-process
    order, both ranks the same number of steps of whole batches (the last round, and a short last batch, topped up
    from the start of the epoch)."""
    cfg = load_config(FinetuneConfig, "configs/finetune/islr/synthetic.yaml",
                      [f"data.shards=[{corpus}/shards/*.tar]", f"optim.batch_size={batch_size}"])
    train = load_split(cfg.data.shards, "synthetic", "train", islr.keep)
    collate = islr.ISLRCollator(cfg.data.num_frames, train=True)

    def labels(process_index: int, processes: int) -> list[list[int]]:
        loader = prepare_data_loader(train_loader(cfg, train, collate, process_index), num_processes=processes,
                                     process_index=process_index, put_on_device=False)
        return [b["labels"].tolist() for b in loader]

    one, ranks = labels(0, 1), [labels(r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(len(one) / 2)
    for r, batches in enumerate(ranks):
        for k, batch in enumerate(batches):
            if 2 * k + r < len(one):  # a short last batch is topped up too: it starts with the one-process batch
                assert batch[: len(one[2 * k + r])] == one[2 * k + r], (r, k)
    assert all(len(batch) == batch_size for batches in ranks for batch in batches)


def _pretend_rank(monkeypatch, rank: int, processes: int, sent: list, gathered: list) -> None:
    """Make ``trainer.predict`` run as ``rank`` of ``processes``: what it gathers is recorded in ``sent``, and
    ``gathered`` comes back."""
    monkeypatch.setattr(trainer, "PartialState", lambda: SimpleNamespace(process_index=rank, num_processes=processes))
    monkeypatch.setattr(trainer, "gather_object", lambda mine: sent.append(mine) or gathered)


def test_ranks_predict_slices_that_reassemble_into_the_single_process_outputs(corpus, monkeypatch):
    """Rank r of P predicts batches r, r + P, … of the one-process batches; the gathered outputs, put back in
    dataset order, are the one-process outputs bit for bit."""
    cfg = load_config(FinetuneConfig, "configs/finetune/islr/synthetic.yaml",
                      [f"data.shards=[{corpus}/shards/*.tar]", "data.num_frames=16", *TINY_ENCODER])
    samples = load_split(cfg.data.shards, "synthetic", "train", islr.keep)  # 24 samples: batches of 5, 5, 5, 5, 4
    torch.manual_seed(0)
    head = islr.build_head(cfg, build_encoder(cfg, None), samples, None).eval()
    single = trainer.predict(head, samples, 5)
    for processes in (2, 3):
        sent: list = []
        for rank in range(processes):
            _pretend_rank(monkeypatch, rank, processes, sent, [])
            trainer.predict(head, samples, 5)
            assert [index for index, _ in sent[rank]] == list(range(rank, 5, processes))
        # all_gather_object's result on any rank: rank 0's list, then rank 1's, …
        _pretend_rank(monkeypatch, 0, processes, [], [item for mine in sent for item in mine])
        outputs = trainer.predict(head, samples, 5)
        assert len(outputs) == len(samples) and all(torch.equal(a, b) for a, b in zip(outputs, single))


# --- 2 processes against 1 (slow) ----------------------------------------------------------------------------------

# Per head: training batch size (its training batch count is odd, so 2 processes get a topped-up last round), and
# small settings. ISLR runs with every option on (NLA-SLR and StepNet), 16 frames out of longer clips.
RUNS = {
    "islr": (5, ["data.num_frames=16", "data.num_workers=1", "islr.nla.label_smoothing=true",
                 "islr.nla.inter_mixup=true", "islr.nla.classifier_integration=true", "islr.nla.intra_mixup=true",
                 "islr.stepnet.enabled=true", "islr.stepnet.width=32", "islr.stepnet.segment_frames=8"]),
    "cslr": (4, ["cslr.hidden=32"]),
    "slt": (4, ["slt.decoder_width=32", "slt.max_target_tokens=12"]),
    "retrieval": (4, ["retrieval.embed_dim=32"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finetune(args: list[str], processes: int) -> dict:
    """metrics.json of ``slp-finetune`` run with 1 process, or launched by accelerate with 2 CPU processes."""
    command = [sys.executable, "-m", "finetune.cli", *args]
    if processes > 1:
        command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_machines", "1",
                   "--num_processes", str(processes), "--main_process_port", str(_free_port()),
                   "--mixed_precision", "no", "--dynamo_backend", "no", *command[1:]]
    # One thread per process in every run: the same kernels, so 1 and 2 processes compute the same bits.
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its ranks
        log, _ = proc.communicate()
        pytest.fail(f"{' '.join(command)} still running after {LAUNCH_TIMEOUT_S} s:\n{log[-4000:]}")
    assert proc.returncode == 0, log[-4000:]
    output = next(a.split("=", 1)[1] for a in args if a.startswith("output="))
    metrics = json.loads((Path(output) / "metrics.json").read_text())
    assert metrics["processes"] == processes
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RUNS))
def test_two_processes_train_and_evaluate_like_one(task, corpus, tiny_mbart_dir, tmp_path):
    batch_size, extra = RUNS[task]
    config = f"configs/finetune/{task}/synthetic.yaml"
    overrides = [f"data.shards=[{corpus}/shards/*.tar]", f"optim.batch_size={batch_size}",
                 f"islr.nla.text_model={tiny_mbart_dir}", f"slt.text_model={tiny_mbart_dir}",
                 f"retrieval.text_model={tiny_mbart_dir}", *TINY_ENCODER, *extra]
    cfg = load_config(FinetuneConfig, config, [f"task={task}", *overrides])
    train = load_split(cfg.data.shards, "synthetic", "train", task_module(task).keep)
    assert math.ceil(len(train) / batch_size) % 2 == 1, "the training batch count must not divide by 2"

    common = ["--task", task, "--config", config, *overrides]
    trained = _finetune([*common, f"output={tmp_path / 'train'}", "optim.epochs=2"], processes=2)
    assert len(trained["history"]) == 2
    checkpoint = ["--eval-only", "--checkpoint", str(tmp_path / "train" / "best.safetensors")]
    two = _finetune([*common, f"output={tmp_path / 'eval2'}", *checkpoint], processes=2)
    one = _finetune([*common, f"output={tmp_path / 'eval1'}", *checkpoint], processes=1)
    print(f"\n{task} ({' '.join(extra)}), 1 and 2 processes: dev {one['dev']}, test {one['test']}")
    assert two["dev"] == one["dev"] and two["test"] == one["test"]
    assert trained["dev"] == one["dev"] and trained["test"] == one["test"]
