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


# Fine-tuned head folders (finetune.export): every task's folder reloads exactly with no config, data or original
# text model, and by Hub id from the cache.

HEAD_OVERRIDES = {"islr": [], "cslr": [], "slt": ["slt.max_target_tokens=8"], "retrieval": []}


def _synthetic_split():
    import itertools

    from slp.synthetic import SyntheticConfig, generate_isolated, generate_sentences

    corpus = SyntheticConfig(num_glosses=5, num_signers=4, repetitions=1, sentences_per_signer=2)
    return list(itertools.islice(generate_isolated(corpus), 6)), list(generate_sentences(corpus))[:6]


def head_folder_of_untrained_head(task: str, text_model, train: list, out) -> tuple:
    """(folder, head): a freshly initialised head of ``configs/finetune/<task>/synthetic.yaml`` (vocabulary and
    classes from ``train``, text model ``text_model``), saved as a head folder at ``out``."""
    from finetune.config import FinetuneConfig
    from finetune.export import save_finetuned
    from finetune.tasks import task_module
    from finetune.trainer import build_encoder
    from slp.config import load_config

    cfg = load_config(FinetuneConfig, f"configs/finetune/{task}/synthetic.yaml",
                      [f"task={task}", f"slt.text_model={text_model}", f"retrieval.text_model={text_model}",
                       *HEAD_OVERRIDES[task]])
    torch.manual_seed(0)
    head = task_module(task).build_head(cfg, build_encoder(cfg, None), train, None).eval()
    return save_finetuned(head, cfg, out, train=train), head


@pytest.fixture(scope="module")
def head_folders(tmp_path_factory, tiny_mbart_dir):
    """task → (folder, eval batch, the saved head's outputs on it, the head); the text model the heads were built
    from is deleted before anything loads them."""
    root = tmp_path_factory.mktemp("head_folders")
    text_model = shutil.copytree(tiny_mbart_dir, root / "mbart_to_delete")
    isolated, sentences = _synthetic_split()
    folders = {}
    for task in HEAD_OVERRIDES:
        train = isolated if task == "islr" else sentences
        folder, head = head_folder_of_untrained_head(task, text_model, train, root / task)
        batch = head.collator(train=False)(train[:2])
        with torch.no_grad():
            folders[task] = (folder, batch, head.predict(**batch), head)
    shutil.rmtree(text_model)
    return folders


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("task", list(HEAD_OVERRIDES))
def test_head_folder_reloads_exactly_without_config_data_or_text_model(head_folders, task):
    from finetune.export import load_finetuned

    folder, batch, outputs, head = head_folders[task]
    model = load_finetuned(folder)
    assert model.task == task and model.config.task == task
    saved, loaded = head.state_dict(), model.head.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    with torch.no_grad():
        assert _same(model.head.predict(**batch), outputs)
    card = (folder / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "slp" and f"sign-language-{task}" in meta["tags"]
    assert "## Pose specification" in card and "| 72 | right_hand | RIGHT_HAND | 126 | right_hand_14 |" in card
    assert yaml.safe_load(card.split("## Config\n\n```yaml\n", 1)[1].split("```", 1)[0])["task"] == task


def test_text_model_is_in_the_folder_as_each_head_needs_it(head_folders):
    import json

    slt_folder, retrieval_folder = head_folders["slt"][0], head_folders["retrieval"][0]
    for folder, section in ((slt_folder, "slt"), (retrieval_folder, "retrieval")):
        assert json.loads((folder / "config.json").read_text())[section]["text_model"] == "text_model"
    assert "tokenizer.json" in {p.name for p in (slt_folder / "text_model").iterdir()}
    assert not (slt_folder / "text_model" / "model.safetensors").exists()  # SLT reads mBART's tokenizer only
    mbart = json.loads((retrieval_folder / "text_model" / "config.json").read_text())
    assert mbart["decoder_layers"] == 0 and (retrieval_folder / "text_model" / "model.safetensors").is_file()
    assert not (head_folders["islr"][0] / "text_model").exists()


_LOAD_HEADS = """
import sys, torch
from finetune.export import load_finetuned
from slp.cli_errors import UserError
for repo_id, batch, out in zip(*[iter(sys.argv[1:])] * 3):
    model = load_finetuned(repo_id)
    with torch.no_grad():
        torch.save(model.head.predict(**torch.load(batch)), out)
try:
    load_finetuned("org/not-downloaded")
except UserError as exc:
    print(exc)
"""


def test_head_folders_load_by_hub_id_from_the_cache_with_identical_outputs(head_folders, tmp_path):
    """A head without (ISLR) and with a text model folder (retrieval: the mBART encoder and tokenizer)."""
    cache = tmp_path / "hub"
    argv = []
    tasks = ("islr", "retrieval")
    for task in tasks:
        folder, batch, _, _ = head_folders[task]
        repo = cache / f"models--org--sign-{task}"
        shutil.copytree(folder, repo / "snapshots" / COMMIT)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)
        torch.save(batch, tmp_path / f"{task}.batch.pt")
        argv += [f"org/sign-{task}", str(tmp_path / f"{task}.batch.pt"), str(tmp_path / f"{task}.out.pt")]
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    done = subprocess.run([sys.executable, "-c", _LOAD_HEADS, *argv], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    for task in tasks:
        assert _same(torch.load(tmp_path / f"{task}.out.pt"), head_folders[task][2]), task
    assert done.stdout.startswith("org/not-downloaded: no such folder, nor a Hub repository that loads")
