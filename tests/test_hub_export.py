"""A Hub-ready encoder: ``save_pretrained`` writes a model card with Hugging Face metadata, and ``from_pretrained``
loads a Hub repository id through ``huggingface_hub``'s cache (offline here, from a cache laid out as the Hub
lays it out)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from slp.models.model_card import render_model_card, training_data_from_manifest
from slp.models.sign_encoder import SignPoseEncoder
from slp.pose.layout import WHOLEBODY_INDICES
from tests.test_models import TINY_ENCODER, _batch

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_card_has_hub_metadata_config_pose_spec_and_no_training_data_by_default(tmp_path):
    encoder = SignPoseEncoder(TINY_ENCODER)
    card = (encoder.save_pretrained(tmp_path / "enc") / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "slp"
    assert meta["pipeline_tag"] == "feature-extraction"
    assert {"sign-language", "pose"} <= set(meta["tags"])
    config_block = card.split("## Config\n\n```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config_block)["manual"]["width"] == TINY_ENCODER.manual.width
    assert f"`(B, T, {encoder.output_dim})`" in card
    assert f"{sum(p.numel() for p in encoder.parameters()):,} parameters" in card
    # one row per point: position, part, component, COCO-WholeBody index, name
    rows = [line for line in card.splitlines() if line.startswith("| ") and line.count("|") == 6][1:]
    assert [int(r.split("|")[4]) for r in rows] == WHOLEBODY_INDICES.tolist()
    assert "| 72 | right_hand | RIGHT_HAND | 126 | right_hand_14 |" in rows
    assert "own per-frame bounding box" in card and "frame size" in card
    assert "Pose estimator of the training data: unknown" in card
    assert "## Training data\n\nNot recorded" in card
    assert "## Metrics" not in card


def test_card_states_estimator_training_data_and_metrics(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"dataset": ["wlasl", "how2sign", "wlasl", "bobsl", "wlasl"]}), manifest)
    training_data = training_data_from_manifest(manifest)
    assert training_data["counts"] == {"bobsl": 1, "how2sign": 1, "wlasl": 3}
    assert len(training_data["manifest_sha256"]) == 64
    encoder = SignPoseEncoder(TINY_ENCODER)
    encoder.save_pretrained(tmp_path / "enc", pose_estimator="rtmw-x 1.0", training_data=training_data,
                            metrics={"wlasl2000 per-instance top-1": 0.61234, "epochs": 3})
    card = (tmp_path / "enc" / "README.md").read_text()
    assert "Pose estimator of the training data: `rtmw-x 1.0`" in card
    assert "| wlasl | 3 |" in card and "| **total** | **5** |" in card
    assert f"Curation manifest sha256: `{training_data['manifest_sha256']}`" in card
    assert "| wlasl2000 per-instance top-1 | 0.6123 |" in card and "| epochs | 3 |" in card


def test_card_says_what_part_of_the_training_data_is_unknown():
    card = render_model_card(TINY_ENCODER, num_parameters=1, output_dim=64,
                             training_data={"manifest_sha256": "ab" * 32})
    assert "Per-dataset counts: not recorded." in card and f"`{'ab' * 32}`" in card
    with pytest.raises(ValueError, match="sha"):
        render_model_card(TINY_ENCODER, num_parameters=1, output_dim=64, training_data={"sha": "x"})


_LOAD = """
import sys, torch
from slp.models.sign_encoder import SignPoseEncoder
encoder = SignPoseEncoder.from_pretrained(sys.argv[1]).eval()
pose, frame_mask = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save(encoder(pose, frame_mask), sys.argv[3])
"""


def _hub_load(tmp_path, cache, repo_id: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    return subprocess.run([sys.executable, "-c", _LOAD, repo_id, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
                          env=env, capture_output=True, text=True, timeout=300)


def test_from_pretrained_loads_a_hub_repository_id_from_the_cache(tmp_path):
    encoder = SignPoseEncoder(TINY_ENCODER).eval()
    export = encoder.save_pretrained(tmp_path / "export")
    cache = tmp_path / "hub"
    repo = cache / "models--org--sign-encoder"
    shutil.copytree(export, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    pose, frame_mask, *_ = _batch()
    torch.save((pose, frame_mask), tmp_path / "in.pt")

    done = _hub_load(tmp_path, cache, "org/sign-encoder")
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = encoder(pose, frame_mask)
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)

    missing = _hub_load(tmp_path, cache, "org/not-downloaded")
    assert missing.returncode != 0 and "LocalEntryNotFoundError" in missing.stderr
