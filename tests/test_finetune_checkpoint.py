"""Fine-tuned checkpoints say what they are: --eval-only refuses another task's checkpoint, another head shape and
a damaged file, each with one line and exit status 2; user errors of slp-finetune print no traceback."""

from __future__ import annotations

import json

import pytest

from finetune.cli import main as finetune
from slp.synthetic import SyntheticConfig, write_synthetic_corpus
from tests.cli import one_line_error

CONFIG = "configs/finetune/islr/synthetic.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(shards override, checkpoint) of a one-epoch ISLR run on a small synthetic corpus."""
    out = tmp_path_factory.mktemp("checkpoint")
    write_synthetic_corpus(out / "corpus", SyntheticConfig(num_glosses=4, num_signers=5, repetitions=1,
                                                           sentences_per_signer=2))
    shards = f"data.shards=[{out / 'corpus' / 'shards'}/*.tar]"
    finetune(["--task", "islr", "--config", CONFIG, shards, f"output={out / 'run'}", "optim.epochs=1"])
    return shards, out / "run" / "best.safetensors"


def test_head_record_holds_task_shapes_and_hash(trained):
    _, checkpoint = trained
    record = json.loads(checkpoint.with_name("head.json").read_text())
    assert record["task"] == "islr" and record["head"]["num_classes"] == 4
    assert record["tensors"]["classifier.weight"][0] == 4 and len(record["sha256"]) == 64


def test_eval_only_refuses_another_tasks_checkpoint(trained, capsys):
    shards, checkpoint = trained
    err = one_line_error(capsys, finetune, ["--task", "cslr", "--config", "configs/finetune/cslr/synthetic.yaml",
                                            shards, "--eval-only", "--checkpoint", str(checkpoint)])
    assert err == f"slp-finetune: error: checkpoint {checkpoint} is a 'islr' head, not 'cslr': run --task islr"


def test_eval_only_detects_a_damaged_checkpoint(trained, capsys, tmp_path):
    shards, checkpoint = trained
    damaged = tmp_path / "best.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    damaged.write_bytes(bytes(data))
    (tmp_path / "head.json").write_text(checkpoint.with_name("head.json").read_text())
    err = one_line_error(capsys, finetune, ["--task", "islr", "--config", CONFIG, shards, f"output={tmp_path / 'eval'}",
                          "--eval-only", "--checkpoint", str(damaged)])
    assert "is damaged: its sha256 differs" in err


def test_eval_only_refuses_a_head_of_another_shape(trained, capsys, tmp_path):
    shards, checkpoint = trained
    err = one_line_error(capsys, finetune, ["--task", "islr", "--config", CONFIG, shards, f"output={tmp_path / 'eval'}",
                          "encoder.manual.width=64", "--eval-only", "--checkpoint", str(checkpoint)])
    assert "does not fit the head built from this config" in err


@pytest.mark.parametrize("problem", ["missing checkpoint", "missing head.json", "missing config", "bad yaml",
                                     "bad option", "missing pretrained"])
def test_user_errors_are_one_line(trained, capsys, tmp_path, problem):
    shards, checkpoint = trained
    argv = ["--task", "islr", "--config", CONFIG, shards, f"output={tmp_path / 'eval'}"]
    if problem == "missing checkpoint":
        argv += ["--eval-only", "--checkpoint", str(tmp_path / "absent.safetensors")]
        expected = "no such file"
    elif problem == "missing head.json":
        (tmp_path / "best.safetensors").write_bytes(checkpoint.read_bytes())
        argv += ["--eval-only", "--checkpoint", str(tmp_path / "best.safetensors")]
        expected = "head.json: no such file"
    elif problem == "missing config":
        argv[3] = str(tmp_path / "absent.yaml")
        expected = "absent.yaml: no such file"
    elif problem == "bad yaml":
        (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
        argv[3] = str(tmp_path / "bad.yaml")
        expected = "invalid YAML"
    elif problem == "bad option":
        argv.append("optim.schedule=sometimes")
        expected = "optim.schedule"
    else:
        argv += ["--pretrained", str(tmp_path / "no_encoder")]
        expected = "--pretrained"
    assert expected in one_line_error(capsys, finetune, argv)


def test_a_split_without_samples_for_the_task_is_one_line(trained, capsys, tmp_path):
    shards, _ = trained
    err = one_line_error(capsys, finetune, ["--task", "islr", "--config", CONFIG, shards, f"output={tmp_path / 'run'}",
                          "data.dev_split=nonexistent"])
    assert "no nonexistent samples of dataset synthetic" in err


def test_tasks_are_registered_by_their_head_modules(capsys):
    from finetune.tasks import registered_tasks

    assert {name: module.__name__ for name, module in registered_tasks().items()} == {
        "cslr": "finetune.cslr", "islr": "finetune.islr", "retrieval": "finetune.retrieval", "slt": "finetune.slt"}
    argv = ["--task", "nope", "--config", CONFIG]
    assert "argument --task: invalid choice: 'nope'" in one_line_error(capsys, finetune, argv)
