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

from slp import DISTRIBUTION
from slp.models.model_card import render_model_card, training_data_from_manifest
from slp.models.sign_encoder import SignPoseEncoder
from slp.pose.layout import WHOLEBODY_INDICES
from slp.threads import torch_threads
from tests.test_models import TINY_ENCODER, _batch

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_card_has_hub_metadata_config_pose_spec_and_no_training_data_by_default(tmp_path):
    encoder = SignPoseEncoder(TINY_ENCODER)
    card = (encoder.save_pretrained(tmp_path / "enc") / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["library_name"] == DISTRIBUTION == "slp-signs"
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


# A loaded model must give exactly the saved model's outputs. Float sums are only bit-identical between two
# processes that split them alike, so both sides of each comparison compute on this many torch threads: the child
# through OMP_NUM_THREADS, this process inside torch_threads.
PINNED_THREADS = 1


def _hub_env(tmp_path, cache) -> dict[str, str]:
    """A child process that reads the Hub cache ``cache`` only, on the pinned thread count."""
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
            "OMP_NUM_THREADS": str(PINNED_THREADS)}


def _hub_load(tmp_path, cache, repo_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _LOAD, repo_id, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
                          env=_hub_env(tmp_path, cache), capture_output=True, text=True, timeout=300)


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
    with torch.no_grad(), torch_threads(PINNED_THREADS):
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


def head_folder_of_untrained_head(task: str, text_model, train: list, out, pretrained: str | None = None) -> tuple:
    """(folder, head): a freshly initialised head of ``configs/finetune/<task>/synthetic.yaml`` (vocabulary and
    classes from ``train``, text model ``text_model``, the encoder ``pretrained`` or a fresh one), saved as a head
    folder at ``out``."""
    from finetune.config import FinetuneConfig
    from finetune.export import save_finetuned
    from finetune.tasks import task_module
    from finetune.trainer import build_encoder
    from slp.config import load_config

    cfg = load_config(FinetuneConfig, f"configs/finetune/{task}/synthetic.yaml",
                      [f"task={task}", f"slt.text_model={text_model}", f"retrieval.text_model={text_model}",
                       *HEAD_OVERRIDES[task]])
    torch.manual_seed(0)
    head = task_module(task).build_head(cfg, build_encoder(cfg, pretrained), train, None).eval()
    return save_finetuned(head, cfg, out, train=train, pretrained=pretrained), head


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
        with torch.no_grad(), torch_threads(PINNED_THREADS):
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
    with torch.no_grad(), torch_threads(PINNED_THREADS):
        assert _same(model.head.predict(**batch), outputs)
    card = (folder / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == DISTRIBUTION and f"sign-language-{task}" in meta["tags"]
    assert "## Pose specification" in card and "| 72 | right_hand | RIGHT_HAND | 126 | right_hand_14 |" in card
    config = yaml.safe_load(card.split("## Config\n\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0])
    assert config["task"] == task and "output" not in config and "shards" not in config["data"]


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
    done = subprocess.run([sys.executable, "-c", _LOAD_HEADS, *argv], env=_hub_env(tmp_path, cache),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for task in tasks:
        assert _same(torch.load(tmp_path / f"{task}.out.pt"), head_folders[task][2]), task
    assert done.stdout.startswith("org/not-downloaded: no such folder, nor a Hub repository that loads")


# Cards a Hub user can trust: each card's own Python example runs on a copy of its folder in another place (the
# original, and the text model and encoder it was made from, deleted; another working directory), every card says
# how to install slp and what the model is for, and no card names a path of the machine that wrote it.

#: Pre-training figures as pretrain.trainer.export_figures records them.
FIGURES = {"steps": 40, "total_steps": 50, "world_size": 2, "resumed_from": 20,
           "final": {"loss": 1.25, "loss_pr": 0.75, "loss_stc": 0.5, "temperature": 0.07, "lr": 1e-5}}


def _moved(folder, to):
    """``folder`` copied to ``to``, the original deleted."""
    shutil.copytree(folder, to)
    shutil.rmtree(folder)
    return to


def _run_card_examples(cards: dict, cwd, monkeypatch) -> subprocess.CompletedProcess:
    """Every ```python block of each card (folder → its README.md text), the placeholder replaced by the folder,
    run as written in one process whose working directory is ``cwd``."""
    from slp.models.model_card import PLACEHOLDER
    from tests.markdown import fenced_blocks, run_python_blocks

    blocks = [block.replace(PLACEHOLDER, str(folder)) for folder, card in cards.items()
              for block in fenced_blocks(card, "python")]
    assert len(blocks) >= len(cards)
    monkeypatch.chdir(cwd)
    return run_python_blocks(blocks, cwd, {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def test_encoder_card_example_runs_from_a_moved_export_with_its_text_model(tmp_path, tiny_mbart_dir, monkeypatch):
    import json

    from slp.models.alignment import SignTextAlignment
    from slp.text import FrozenTextEncoder
    from tests.test_finetune_pretrained_init import _pretraining_model

    text_model = shutil.copytree(tiny_mbart_dir, tmp_path / "local_mbart")
    model = _pretraining_model()
    export = model.save_pretrained(tmp_path / "run" / "encoder", text_model=str(text_model),
                                   training_data={"counts": {"synthetic": 990}, "manifest_sha256": "ab" * 32},
                                   pretraining=FIGURES)
    card = (export / "README.md").read_text()
    assert str(tmp_path) not in card and "local_mbart" not in card
    assert json.loads((export / "alignment_config.json").read_text())["text_model"] == "./text_model"
    assert f"pip install {DISTRIBUTION}" in card and _front_matter(card)["pipeline_tag"] == "feature-extraction"
    assert "## Intended use and limitations\n\n**A demo model.**" in card and "synthetic" in card
    assert "Pre-trained for 40 of 50 optimiser steps on 2 rank(s) (resumed from step 20)." in card
    assert "| L_PR (masked pose reconstruction) | 0.75 |" in card and "| L_STC (sign-text contrastive) | 0.5 |" in card

    moved = _moved(export, tmp_path / "elsewhere" / "encoder")
    shutil.rmtree(text_model)
    (tmp_path / "work").mkdir()
    done = _run_card_examples({moved: card}, tmp_path / "work", monkeypatch)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"torch.Size([1, 32, {model.encoder.output_dim}])" in done.stdout
    # The alignment module's text encoder travelled with the folder and loads from it.
    _, moved_text_model = SignTextAlignment.from_pretrained(moved)
    assert moved_text_model == str(moved / "text_model")
    assert FrozenTextEncoder.from_pretrained(moved_text_model).d_model == model.alignment.text_dim


def test_head_card_examples_run_from_moved_folders(tmp_path, tiny_mbart_dir, monkeypatch):
    import json

    text_model = shutil.copytree(tiny_mbart_dir, tmp_path / "local_mbart")
    encoder = SignPoseEncoder(TINY_ENCODER).save_pretrained(
        tmp_path / "pretrain" / "encoder", training_data={"counts": {"synthetic": 990}}, pretraining=FIGURES)
    sha = json.loads((encoder / "training.json").read_text())["weights_sha256"]
    isolated, sentences = _synthetic_split()
    cards = {}
    for task in HEAD_OVERRIDES:
        folder, _ = head_folder_of_untrained_head(task, text_model, isolated if task == "islr" else sentences,
                                                  tmp_path / "runs" / task,
                                                  pretrained=str(encoder) if task == "islr" else None)
        card = (folder / "README.md").read_text()
        assert str(tmp_path) not in card, task
        assert f"pip install {DISTRIBUTION}" in card and "## Intended use and limitations\n\n**A demo model.**" in card
        cards[_moved(folder, tmp_path / "elsewhere" / task)] = card
    islr = cards[tmp_path / "elsewhere" / "islr"]
    meta = _front_matter(islr)
    assert "pipeline_tag" not in meta and {"keypoints", "pose"} <= set(meta["tags"])  # keypoints in, not video
    assert (f"The pose encoder started from a pre-trained slp encoder (its `model.safetensors` sha256 `{sha}`), "
            "pre-trained on 990 `synthetic` samples.") in islr
    assert "## Pre-training run\n\nThe pre-training run of the encoder this head started from. Pre-trained for 40 " \
           "of 50 optimiser steps" in islr
    assert "5 synthetic glosses performed by generated skeletons" in islr
    assert "The pose encoder was trained from scratch." in cards[tmp_path / "elsewhere" / "cslr"]

    shutil.rmtree(text_model)
    shutil.rmtree(encoder)
    (tmp_path / "work").mkdir()
    done = _run_card_examples(cards, tmp_path / "work", monkeypatch)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "{'top': [{'class': " in printed and "{'glosses': [" in printed and "{'translation': " in printed
    assert "{'matches': [{'text': 'The " in printed


def test_head_card_counts_the_clips_it_was_trained_on_and_what_the_manifest_lists(tmp_path):
    from finetune import islr
    from finetune.config import FinetuneConfig
    from finetune.data import load_split
    from finetune.export import save_finetuned, training_card_data
    from finetune.trainer import build_encoder
    from slp.config import load_config
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus

    write_synthetic_corpus(tmp_path / "corpus", SyntheticConfig(num_glosses=4, num_signers=3, dev_signers=1,
                                                                 test_signers=1, repetitions=1,
                                                                 sentences_per_signer=2))
    cfg = load_config(FinetuneConfig, "configs/finetune/islr/synthetic.yaml",
                      [f"data.shards=[{tmp_path}/corpus/shards/*.tar]", f"output={tmp_path}/run"])
    train = load_split(cfg.data.shards, cfg.data.dataset, cfg.data.train_split, islr.keep)
    head = islr.build_head(cfg, build_encoder(cfg, None), train, None)
    card = (save_finetuned(head, cfg, tmp_path / "run" / "model", train=train, card_data=training_card_data(cfg))
            / "README.md").read_text()
    listed = sum(row["split"] == "train" for row in pq.read_table(tmp_path / "corpus" / "manifest.parquet",
                                                                   columns=["split"]).to_pylist())
    assert 0 < len(train) < listed  # the split's sentences are no ISLR clips
    assert f"Fine-tuned on {len(train):,} clips: the labelled isolated signs of split `train` of synthetic" in card
    assert f"| synthetic | {len(train):,} |" in card and f"| **total** | **{len(train):,}** |" in card
    assert f"The curation manifest (its sha256 below) lists {listed:,} samples of that split" in card
    assert str(tmp_path) not in card and "shards:" not in card and "output:" not in card
    assert json_config_keeps_the_paths(tmp_path / "run" / "model", tmp_path)


def json_config_keeps_the_paths(folder, root) -> bool:
    """The head folder's config.json is still the run's whole config (its paths included)."""
    import json

    config = json.loads((folder / "config.json").read_text())
    return config["output"] == f"{root}/run" and config["data"]["shards"] == [f"{root}/corpus/shards/*.tar"]
