"""The console scripts exist, parse their arguments and run the foundation's commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from data_curation.cli import main as curate
from finetune.cli import main as finetune


def test_console_scripts_print_help():
    for module in ("data_curation.cli", "finetune.cli"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
        assert "usage:" in out.stdout


def test_curate_synthetic_then_render_a_shard_sample(tmp_path, capsys):
    curate(["synthetic", "--out", str(tmp_path / "syn"), "num_glosses=3", "num_signers=4", "repetitions=1",
            "sentences_per_signer=1"])
    assert "16 synthetic samples" in capsys.readouterr().out
    shard = tmp_path / "syn" / "shards" / "synthetic-isolated-000000.tar"
    curate(["render", str(shard), "--out", str(tmp_path / "r" / "sign"), "--key",
            "synthetic_isolated_s001_g002_r00"])
    assert "synthetic_isolated_s001_g002_r00" in capsys.readouterr().out
    with Image.open(tmp_path / "r" / "sign.gif") as gif:
        assert gif.n_frames > 8 and gif.size == (1280, 720)
    assert (tmp_path / "r" / "sign_sheet.png").is_file()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        curate(["synthetic", "--out", str(tmp_path), "no_such_field=1"])
    with pytest.raises(SystemExit) as err:
        finetune(["--task", "islr", "--config", "x.yaml", "--eval-only"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        finetune(["--task", "pose-dance", "--config", "x.yaml"])


def test_options_a_head_refuses_are_one_line(tmp_path, capsys):
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    write_synthetic_corpus(tmp_path / "c", SyntheticConfig(num_glosses=3, num_signers=4, repetitions=1,
                                                           sentences_per_signer=0))
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        finetune(["--task", "islr", "--config", "configs/finetune/islr/synthetic.yaml",
                  f"data.shards=[{tmp_path}/c/shards/*.tar]", f"output={tmp_path}/run", "islr.stepnet.enabled=true",
                  "islr.stepnet.spatial=false", "islr.stepnet.temporal=false"])
    assert err.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "--task islr:" in message[0] and "stepnet" in message[0]
