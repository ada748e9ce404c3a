"""Hands-only clips (the 21 + 21 hand points, no body, no face: MediaPipe Hands landmarks, ASL Signs clips whose pose
and face are NaN) are a first-class input: curation keeps them without a warning per clip, the audit counts them,
and normalisation, both encoder streams, the pre-training objectives, every fine-tuning head and slp-predict take
them without a NaN in outputs, losses or gradients."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from data_curation.audit import audit_build
from data_curation.cli import main as curate
from data_curation.fixtures import write_fixture_datasets
from data_curation.fixtures.poses import fixture_keypoints, write_pose
from finetune.config import FinetuneConfig
from finetune.data import collate_poses
from finetune.export import save_finetuned
from finetune.predict_cli import main as slp_predict
from finetune.tasks import task_module
from finetune.trainer import build_encoder
from slp.config import load_config
from slp.data.loader import PretrainDataConfig, pretrain_batches
from slp.data.shards import write_shard
from slp.losses import hierarchical_mask
from slp.models import LossConfig, PretrainingModel, PretrainModelConfig, SignPoseEncoder
from slp.models.gcn import PoseEmbeddingConfig
from slp.pose.layout import HAND_INDICES, LEFT_HAND, NUM_POINTS, RIGHT_HAND
from slp.pose.normalize import normalize_pose
from slp.synthetic import SyntheticConfig, generate_isolated, generate_sentences
from slp.text import FrozenTextEncoder
from tests.hands_only import HANDLESS_EVERY, VARIANTS, hands_only_keypoints, hands_only_sample
from tests.test_models import TINY_ENCODER

CORPUS = SyntheticConfig(num_glosses=5, num_signers=4, repetitions=1, sentences_per_signer=2, languages=("en",))
NON_HAND = np.setdiff1d(np.arange(NUM_POINTS), HAND_INDICES)
#: The curation build: this many hands-only WLASL clips (the variants in turn) and this many whole-body ones.
HANDS_ONLY_CLIPS, WHOLE_BODY_CLIPS = 1000, 100


@pytest.fixture(scope="module")
def isolated() -> list:
    """Every variant of four isolated synthetic signs, hands only."""
    return [hands_only_sample(s, v) for s in itertools.islice(generate_isolated(CORPUS), 4) for v in VARIANTS]


@pytest.fixture(scope="module")
def sentences() -> list:
    """Every variant of three synthetic sentences, hands only."""
    return [hands_only_sample(s, v) for s in list(generate_sentences(CORPUS))[:3] for v in VARIANTS]


def _assert_finite_gradients(module: torch.nn.Module) -> None:
    grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    assert grads, "no gradient reached the parameters"
    bad = [name for name, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


# --- the fixtures themselves ----------------------------------------------------------------------------------


def test_hands_only_variants_miss_what_they_say():
    sample = next(generate_isolated(CORPUS))
    for variant in VARIANTS:
        pose = hands_only_sample(sample, variant).pose
        assert (pose[:, NON_HAND] == 0).all() and (pose[..., 2][:, HAND_INDICES] > 0).any()
    one_hand = hands_only_sample(sample, "one_hand").pose
    assert (one_hand[:, RIGHT_HAND] == 0).all() != (one_hand[:, LEFT_HAND] == 0).all()
    handless = hands_only_sample(sample, "handless_frames").pose
    assert (handless[::HANDLESS_EVERY] == 0).all() and (handless[1::HANDLESS_EVERY, :, 2] > 0).any()
    keypoints = fixture_keypoints(10, seed=1)
    kept = hands_only_keypoints(keypoints)
    assert (kept[:, :91] == 0).all() and np.array_equal(kept[:, 91:], keypoints[:, 91:])


# --- normalisation, encoders, pre-training ----------------------------------------------------------------------


def test_normalisation_is_finite_and_leaves_the_missing_parts_at_zero(isolated):
    pose, frame_mask = collate_poses(isolated, 32, train=False)
    assert torch.isfinite(pose).all()
    assert (pose[:, :, NON_HAND] == 0).all()
    hands = pose[:, :, HAND_INDICES]
    seen = hands[..., 2] > 0
    assert seen.any() and (hands[..., :2][seen].abs() <= 1 + 1e-6).all()
    # a frame without any point, a hand seen at a single point: still finite
    one = torch.from_numpy(isolated[0].pose[:4].astype(np.float32))
    one[0] = 0
    one[1, LEFT_HAND.start + 1:] = 0
    assert torch.isfinite(normalize_pose(one, torch.tensor([640.0, 480.0]))).all()


@pytest.mark.parametrize("embedding", ["gcn", "linear"])
@pytest.mark.parametrize("streams", [(True, True), (True, False), (False, True)], ids=["both", "manual", "non_manual"])
def test_encoder_streams_are_finite_with_finite_gradients(isolated, embedding, streams):
    """The non-manual stream of a hands-only clip reads nothing but missing points; alone it still trains."""
    use_manual, use_non_manual = streams
    cfg = dataclasses.replace(TINY_ENCODER, use_manual=use_manual, use_non_manual=use_non_manual,
                              embedding=PoseEmbeddingConfig(kind=embedding, channels=[16], manual_dim=32,
                                                            non_manual_dim=32))
    torch.manual_seed(0)
    encoder = SignPoseEncoder(cfg)
    pose, frame_mask = collate_poses(isolated, 32, train=True)
    out = encoder(pose, frame_mask)
    assert torch.isfinite(out).all()
    (out**2).mean().backward()
    _assert_finite_gradients(encoder)


def _pretraining_model(similarity: str = "fine") -> PretrainingModel:
    torch.manual_seed(0)
    return PretrainingModel(PretrainModelConfig(encoder=TINY_ENCODER, text_dim=16, embed_dim=24, decoder_hidden=32),
                            LossConfig(similarity=similarity, chunk_size=4))


@pytest.mark.parametrize("similarity", ["fine", "coarse"])
def test_pretraining_losses_and_gradients_are_finite(isolated, similarity):
    pose, frame_mask = collate_poses(isolated, 32, train=True)
    b = len(isolated)
    text, text_mask = torch.randn(b, 5, 16, generator=torch.Generator().manual_seed(0)), torch.ones(b, 5, dtype=bool)
    paired = torch.ones(b, dtype=torch.bool)
    hierarchical = hierarchical_mask(frame_mask, 0.4, np.random.default_rng(0))
    only_missing = torch.zeros_like(hierarchical)
    only_missing[:, :, NON_HAND] = frame_mask[..., None]  # masks nothing detected: nothing to reconstruct
    for joint_mask in (hierarchical, only_missing):
        model = _pretraining_model(similarity)
        out = model(pose, frame_mask, joint_mask, text, text_mask, paired)
        assert all(torch.isfinite(v).all() for v in out.values()), out
        out["loss"].backward()
        _assert_finite_gradients(model)
    assert out["loss_pr"] == 0 and out["loss_stc"] > 0  # the last: only missing points masked


def test_pretraining_loader_batches_of_hands_only_shards_train(isolated, sentences, tiny_mbart_dir, tmp_path):
    write_shard(tmp_path / "hands-000000.tar", [*isolated, *sentences])
    text_encoder = FrozenTextEncoder.from_pretrained(tiny_mbart_dir, 64)
    data = PretrainDataConfig(shards=[str(tmp_path / "*.tar")], splits=["train", "dev", "test"], batch_size=8,
                              max_frames=64, max_text_tokens=64, shuffle_buffer=8, bucket_batches=1)
    torch.manual_seed(0)
    model = PretrainingModel(PretrainModelConfig(encoder=TINY_ENCODER, text_dim=text_encoder.d_model, embed_dim=24,
                                                 decoder_hidden=32), LossConfig(chunk_size=4))
    seen = 0
    for batch in itertools.islice(pretrain_batches(data, text_encoder.text_tokenizer), 2):
        assert torch.isfinite(batch.pose).all()
        text = text_encoder(batch.input_ids, batch.text_mask)
        out = model(batch.pose, batch.frame_mask, batch.joint_mask, text, batch.text_mask, batch.paired)
        assert torch.isfinite(out["loss"]) and out["loss_pr"] > 0
        model.zero_grad()
        out["loss"].backward()
        _assert_finite_gradients(model)
        seen += len(batch.keys)
    assert seen == 2 * data.batch_size


# --- fine-tuning heads ----------------------------------------------------------------------------------------

HEADS = {
    "islr": [],
    "islr_nla": ["islr.nla.label_smoothing=true", "islr.nla.inter_mixup=true", "islr.nla.intra_mixup=true",
                 "islr.nla.classifier_integration=true"],
    "islr_stepnet": ["islr.stepnet.enabled=true"],
    "islr_heatmap": ["islr.heatmap.enabled=true", "islr.heatmap.size=32", "islr.heatmap.channels=[8,8]"],
    "cslr": [],
    "slt": ["slt.max_target_tokens=8"],
    "retrieval": [],
}


def _head(name: str, text_model: Path, train: list):
    """A fresh head of ``configs/finetune/<task>/synthetic.yaml`` with the options of :data:`HEADS`, and its config."""
    task = name.split("_")[0]
    cfg = load_config(FinetuneConfig, f"configs/finetune/{task}/synthetic.yaml",
                      [f"task={task}", f"slt.text_model={text_model}", f"retrieval.text_model={text_model}",
                       f"islr.nla.text_model={text_model}", *HEADS[name]])
    torch.manual_seed(0)
    return task_module(task).build_head(cfg, build_encoder(cfg, None), train, None), cfg


def _evaluation_tensors(name: str, head, batch: dict) -> list[torch.Tensor]:
    """What evaluation computes before it decodes: class scores, CTC log-probabilities, next-token logits, the
    sign and text embeddings."""
    with torch.no_grad():
        if name.startswith("islr"):
            return head.predict(**batch)
        if name == "cslr":
            log_probs, lengths = head.log_probs(batch["pose"], batch["frame_mask"])
            return [row[:n] for row, n in zip(log_probs, lengths)]
        if name == "slt":
            memory, frame_mask = head.encode_signs(batch["pose"], batch["frame_mask"])
            return [head.logits(batch["start_ids"][:, None], memory, frame_mask)]
        return [t for pair in head.predict(**batch) for t in pair]


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_trains_and_evaluates_without_nan(name, isolated, sentences, tiny_mbart_dir):
    train = isolated if name.startswith("islr") else sentences
    head, _ = _head(name, tiny_mbart_dir, train)
    head.train()
    loss = head(**head.collator(train=True)(train))
    assert torch.isfinite(loss), loss
    loss.backward()
    _assert_finite_gradients(head)
    head.eval()
    outputs = _evaluation_tensors(name, head, head.collator(train=False)(train))
    assert outputs and all(torch.isfinite(o).all() for o in outputs)


# --- curation, audit, slp-predict -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wlasl_hands(tmp_path_factory) -> Path:
    """A WLASL release (``WLASL_v0.3.json`` and one ``.npz`` pose per clip) of :data:`HANDS_ONLY_CLIPS` hands-only
    clips, the variants in turn, and :data:`WHOLE_BODY_CLIPS` whole-body ones, with its curate config."""
    root = tmp_path_factory.mktemp("wlasl_hands")
    total = HANDS_ONLY_CLIPS + WHOLE_BODY_CLIPS
    glosses = [{"gloss": f"gloss {g}", "instances": []} for g in range(10)]
    for i in range(total):
        video_id = f"{i:05d}"
        glosses[i % 10]["instances"].append({
            "bbox": [0, 0, 640, 480], "fps": 25, "frame_end": -1, "frame_start": 1, "instance_id": i // 10,
            "signer_id": i % 7, "source": "aslbrick", "split": ("train", "val", "test")[i % 3],
            "url": f"http://aslbrick.example.org/videos/{video_id}.mp4", "variation_id": 0, "video_id": video_id})
        keypoints = fixture_keypoints(8 + i % 9, seed=i)
        if i < HANDS_ONLY_CLIPS:
            keypoints = hands_only_keypoints(keypoints, VARIANTS[i % len(VARIANTS)])
        write_pose(root / "poses" / f"{video_id}.npz", keypoints, "npz")
    (root / "WLASL_v0.3.json").write_text(json.dumps(glosses, indent=4) + "\n", encoding="ascii")
    config = {"output": str(root / "build"), "records_per_shard": 250, "workers": 1, "min_frames": 4,
              "datasets": {"wlasl": {"adapter": "wlasl", "annotation_root": str(root),
                                     "poses": {"root": str(root / "poses"), "format": "npz"}}}}
    (root / "curate.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def _no_per_clip_output(out: str, err: str, records: list[logging.LogRecord], caught: list, clips: int) -> None:
    """Nothing said once per clip: a few lines of output, no warning logged or raised per clip."""
    lines = [line for line in f"{out}\n{err}".splitlines() if line.strip()]
    assert len(lines) < 20, lines[:40]
    assert [r for r in records if r.levelno >= logging.WARNING] == []
    assert len(caught) < clips // 10, [str(w.message) for w in caught[:5]]


def test_a_build_of_hands_only_clips_keeps_them_quietly_and_the_audit_counts_them(wlasl_hands, caplog, capsys):
    total = HANDS_ONLY_CLIPS + WHOLE_BODY_CLIPS
    capsys.readouterr()
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curate(["build", "--config", str(wlasl_hands / "curate.yaml")])
    captured = capsys.readouterr()
    _no_per_clip_output(captured.out, captured.err, caplog.records, caught, total)
    assert f"{total} records → {total} samples" in captured.out and "warnings" not in captured.out
    summary = json.loads((wlasl_hands / "build" / "summary.json").read_text())
    assert summary["totals"]["written"] == total and summary["totals"]["rejected"] == 0
    assert summary["totals"]["warnings"] == 0

    caplog.clear()
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curate(["audit", str(wlasl_hands / "build"), "--out", str(wlasl_hands / "audit")])  # no leak: exit 0
    captured = capsys.readouterr()
    _no_per_clip_output(captured.out, captured.err, caplog.records, caught, total)
    report = json.loads((wlasl_hands / "audit" / "audit.json").read_text())
    wlasl = report["datasets"]["wlasl"]
    assert wlasl["hands_only_clips"] == HANDS_ONLY_CLIPS
    assert wlasl["hands_only_rate"] == round(HANDS_ONLY_CLIPS / total, 4)
    page = (wlasl_hands / "audit" / "audit.html").read_text()
    assert "Hands-only clips" in page and f"{HANDS_ONLY_CLIPS} of {total} samples" in page
    assert "<th>hands-only clips</th>" in page
    assert f"<td>{HANDS_ONLY_CLIPS} ({HANDS_ONLY_CLIPS / total:.1%})</td>" in page


def test_asl_signs_clips_whose_pose_and_face_are_nan_are_kept_and_counted(tmp_path):
    """The ASL Signs release marks an undetected part NaN: a clip with NaN pose and face rows is hands-only."""
    from data_curation.fixtures.asl_signs import CLIPS, clip_path

    config = write_fixture_datasets(tmp_path / "fixtures", ("asl_signs",))
    participant = next(iter(CLIPS))
    for sequence, *_ in CLIPS[participant]:
        path = tmp_path / "fixtures" / "asl_signs" / clip_path(participant, sequence)
        table = pq.read_table(path)
        body_or_face = pc.is_in(table["type"], value_set=pa.array(["pose", "face"]))
        for name in ("x", "y", "z"):
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pc.if_else(body_or_face, float("nan"), table[name]))
        pq.write_table(table, path)
    curate(["build", "--config", str(config)])
    manifest = pq.read_table(tmp_path / "fixtures" / "build" / "manifest.parquet").to_pylist()
    kept = {row["source_id"] for row in manifest}
    assert {str(sequence) for sequence, *_ in CLIPS[participant]} <= kept
    asl_signs = audit_build(tmp_path / "fixtures" / "build", progress=False).report["datasets"]["asl_signs"]
    assert asl_signs["hands_only_clips"] == len(CLIPS[participant]) < asl_signs["samples"]


def test_slp_predict_over_many_hands_only_files_prints_no_warning(wlasl_hands, isolated, tmp_path, caplog, capsys,
                                                                   tiny_mbart_dir):
    head, cfg = _head("islr", tiny_mbart_dir, isolated)
    folder = save_finetuned(head.eval(), cfg, tmp_path / "model", train=isolated)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    clips = 150
    for i in range(clips):  # hands-only clips of every variant
        name = f"{i:05d}.npz"
        (inputs / name).write_bytes((wlasl_hands / "poses" / name).read_bytes())
    capsys.readouterr()
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slp_predict(["--model", str(folder), str(inputs), "--out", str(tmp_path / "p.json"), "--no-progress"])
    captured = capsys.readouterr()
    summary = json.loads((tmp_path / "p.json").read_text())
    assert (summary["inputs"], summary["predicted"], summary["failed"]) == (clips, clips, 0)
    assert all(np.isfinite(t["probability"]) for p in summary["predictions"] for t in p["top"])
    # one line per prediction (the answer), nothing else per clip
    answers = [line for line in captured.out.splitlines() if line.startswith(str(inputs))]
    assert len(answers) == clips
    others = [line for line in captured.out.splitlines() if line.strip() and line not in answers]
    _no_per_clip_output("\n".join(others), captured.err, caplog.records, caught, clips)


def _wlasl_hands_samples(realdata: Path, count: int) -> list:
    """``count`` real WLASL clips of MediaPipe Hands landmarks as hands-only shard samples: slot 0 as the left hand,
    slot 1 as the right (the release keeps detection order, not handedness), -1 = no hand."""
    from slp.data.schema import Sample, SampleMeta

    landmarks = np.load(realdata / "wlasl_hands" / "landmarks_part0.npz")
    samples = []
    for k, video_id in enumerate(sorted(landmarks.files)[:count]):
        hands = landmarks[video_id].astype(np.float32)  # (T, 2, 21, 2)
        seen = ~(hands == -1).all(axis=-1, keepdims=True)
        pose = np.zeros((len(hands), NUM_POINTS, 3), np.float32)
        pose[:, HAND_INDICES] = np.concatenate([hands * seen, seen], axis=-1).reshape(len(hands), 42, 3)
        meta = SampleMeta(dataset="wlasl_hands", split="train", sign_language="ASL", text_language="en",
                          source_id=video_id, fps=25.0, width=640, height=480, gloss=f"gloss{k % 4}", label=k % 4)
        samples.append(Sample(f"wlasl_hands_{video_id}", pose.astype(np.float16), meta))
    return samples


def test_real_mediapipe_hands_clips_train_without_nan(realdata, tiny_mbart_dir):
    samples = _wlasl_hands_samples(realdata, 24)
    assert any((s.pose[..., 2] == 0).all(axis=1).any() for s in samples)  # real frames without any hand
    for name in ("islr", "islr_stepnet"):
        head, _ = _head(name, tiny_mbart_dir, samples)
        head.train()
        loss = head(**head.collator(train=True)(samples))
        loss.backward()
        assert torch.isfinite(loss)
        _assert_finite_gradients(head)
        head.eval()
        assert all(torch.isfinite(o).all() for o in _evaluation_tensors(name, head, head.collator(False)(samples)))
    pose, frame_mask = collate_poses(samples, 32, train=True)
    model = _pretraining_model()
    b = len(samples)
    out = model(pose, frame_mask, hierarchical_mask(frame_mask, 0.4, np.random.default_rng(0)),
                torch.randn(b, 5, 16), torch.ones(b, 5, dtype=torch.bool), torch.ones(b, dtype=torch.bool))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss_pr"] > 0
    _assert_finite_gradients(model)
