"""slp-predict and the head folder a fine-tuning run ends with: a tiny ISLR head trained through slp-finetune, its
folder self-contained (reloads elsewhere, --eval-only takes it and reproduces the run's metrics), its predictions on
an exported .pose file, a shard sample and a video equal to what evaluation predicts, a captioned GIF, batch mode
that reports a broken input in one line and goes on, one-line user errors; real data when it is there."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.cli import main as finetune
from finetune.export import CARD_NAME, load_finetuned
from finetune.predict_cli import main as slp_predict
from finetune.trainer import predict
from slp.data.shards import iter_samples
from slp.extract.backends import find_mediapipe_python
from slp.pose.export import write_pose_79
from slp.synthetic import SyntheticConfig, generate_sentences, write_synthetic_corpus
from tests.cli import one_line_error
from tests.extract_fakes import unavailable, write_synthetic_videos
from tests.test_hub_export import head_folder_of_untrained_head

CONFIG = "configs/finetune/islr/synthetic.yaml"
CORPUS = SyntheticConfig(num_glosses=6, num_signers=5, repetitions=1, sentences_per_signer=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(shards override, run folder, test samples) of a 2-epoch ISLR run on a small synthetic corpus."""
    out = tmp_path_factory.mktemp("predict")
    write_synthetic_corpus(out / "corpus", CORPUS)
    shards = f"data.shards=[{out / 'corpus' / 'shards'}/*.tar]"
    finetune(["--task", "islr", "--config", CONFIG, shards, f"output={out / 'run'}", "optim.epochs=2"])
    test = [s for s in iter_samples(sorted((out / "corpus" / "shards").glob("*isolated*.tar")))
            if s.meta.split == "test"]
    return shards, out / "run", test


def _predict(capsys, *argv: str, status: int = 0) -> tuple[str, str]:
    """stdout and stderr of slp-predict, which exits with ``status`` (1: a batch where some input failed)."""
    capsys.readouterr()
    if status:
        with pytest.raises(SystemExit) as exit_info:
            slp_predict(list(argv))
        assert exit_info.value.code == status
    else:
        slp_predict(list(argv))
    captured = capsys.readouterr()
    return captured.out, captured.err


def _evaluation_top5(run, sample) -> tuple[list[int], torch.Tensor]:
    """Classes and probabilities of ``sample`` as evaluation predicts them: in the evaluation batches of the test
    split, with the run's batch size."""
    _, folder, test = run
    model = load_finetuned(folder / "model")
    logits = predict(model.head, test, model.config.optim.batch_size)[test.index(sample)]
    top = logits.softmax(dim=-1).topk(5)
    return top.indices.tolist(), top.values


def test_run_ends_with_a_self_contained_head_folder(run, tmp_path, capsys):
    shards, folder, test = run
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder / "model", moved)
    assert sorted(p.name for p in moved.iterdir()) == ["README.md", "config.json", "head.json", "model.safetensors"]
    record = json.loads((moved / "head.json").read_text())
    glosses = {s.meta.label: s.meta.gloss for s in test}
    assert record["task"] == "islr" and record["outputs"]["class_names"] == [glosses[k] for k in range(6)]
    card = (moved / CARD_NAME).read_text()
    trained = json.loads((folder / "metrics.json").read_text())
    assert "pipeline_tag" not in card and "- keypoints" in card and "## Pose specification" in card  # not video
    assert "| per_instance_top1 |" in card and "| synthetic |" in card and "Curation manifest sha256: `" in card
    assert f"value: {round(trained['test']['per_class_top5'], 4)}" in card  # model-index: the test metrics
    # --eval-only takes the folder (its own config and encoder make the head) and reproduces the run's metrics
    finetune(["--task", "islr", "--config", CONFIG, shards, f"output={tmp_path / 'eval'}", "--eval-only",
              "--checkpoint", str(moved)])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"] == trained["test"]
    err = _eval_error(capsys, ["--task", "cslr", "--config", "configs/finetune/cslr/synthetic.yaml", shards,
                               f"output={tmp_path / 'eval2'}", "--eval-only", "--checkpoint", str(moved)])
    assert "is a 'islr' head, not 'cslr'" in err


def _eval_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        finetune(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_pose_file_and_shard_sample_give_the_evaluation_prediction(run, tmp_path, capsys):
    _, folder, test = run
    sample = test[3]
    pose_file = write_pose_79(tmp_path / "clip.pose", sample.pose, sample.meta.fps, sample.meta.width,
                              sample.meta.height)
    out, _ = _predict(capsys, "--model", str(folder / "model"), str(pose_file), "--out", str(tmp_path / "p.json"),
                      "--render", str(tmp_path / "p.gif"))
    summary = json.loads((tmp_path / "p.json").read_text())
    assert (summary["inputs"], summary["predicted"], summary["failed"]) == (1, 1, 0)
    (prediction,) = summary["predictions"]
    assert prediction["frames"] == len(sample.pose) and prediction["width"] == sample.meta.width
    top = prediction["top"]
    names = json.loads((folder / "model" / "head.json").read_text())["outputs"]["class_names"]
    assert len(top) == 5 and all(t["gloss"] == names[t["class"]] for t in top)
    probabilities = [t["probability"] for t in top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    classes, expected = _evaluation_top5(run, sample)
    assert [t["class"] for t in top] == classes
    torch.testing.assert_close(torch.tensor(probabilities), expected, rtol=1e-5, atol=1e-7)
    assert out.strip().splitlines()[-1].startswith(f"{pose_file}: {top[0]['gloss']} ")
    with Image.open(tmp_path / "p.gif") as gif:  # the pose, then the caption band under it
        assert gif.n_frames == len(sample.pose) and gif.size[0] == 480 and gif.size[1] > 480 * 720 // 1280
    # the shard sample itself: the same pose, the same prediction
    shard = next((folder.parent / "corpus" / "shards").glob("*isolated*.tar"))
    _predict(capsys, "--model", str(folder / "model"), str(shard), "--key", sample.key, "--out",
             str(tmp_path / "s.json"))
    (from_shard,) = json.loads((tmp_path / "s.json").read_text())["predictions"]
    assert from_shard["top"] == top and from_shard["input"] == f"{shard}:{sample.key}"


def test_batch_mode_reports_a_broken_file_in_one_line_and_goes_on(run, tmp_path, capsys):
    _, folder, test = run
    inputs = tmp_path / "inputs"
    for sample in test[:3]:
        write_pose_79(inputs / f"{sample.key}.pose", sample.pose, sample.meta.fps, sample.meta.width,
                      sample.meta.height)
    (inputs / "broken.pose").write_bytes(b"not a pose file")
    (inputs / "notes.md").write_text("not an input: skipped")
    out, err = _predict(capsys, "--model", str(folder / "model"), str(inputs), "--out", str(tmp_path / "b.json"),
                        "--render", str(tmp_path / "renders"), "--batch-size", "2", status=1)
    summary = json.loads((tmp_path / "b.json").read_text())
    assert (summary["inputs"], summary["predicted"], summary["failed"]) == (4, 3, 1)
    assert summary["inputs"] == summary["predicted"] + summary["failed"] == len(summary["predictions"]) + 1
    (error,) = summary["errors"]
    assert error["input"] == str(inputs / "broken.pose") and "not a readable .pose file" in error["error"]
    broken_lines = [line for line in err.splitlines() if "broken.pose" in line]
    assert len(broken_lines) == 1 and broken_lines[0].startswith("slp-predict: ") and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == sorted(f"{s.key}.gif" for s in test[:3])
    assert "4 inputs: 3 predicted, 1 failed" in out
    # a list file: its lines, relative to its folder
    (tmp_path / "list.txt").write_text(f"# two of them\ninputs/{test[0].key}.pose\n\ninputs/broken.pose\n")
    _predict(capsys, "--model", str(folder / "model"), str(tmp_path / "list.txt"), "--out",
             str(tmp_path / "l.json"), "--no-progress", status=1)
    listed = json.loads((tmp_path / "l.json").read_text())
    assert (listed["predicted"], listed["failed"]) == (1, 1)
    batched = next(r["top"] for r in summary["predictions"] if r["input"].endswith(f"{test[0].key}.pose"))
    alone = listed["predictions"][0]["top"]  # batched with another clip above: the same up to float rounding
    assert [t["class"] for t in alone] == [t["class"] for t in batched]
    np.testing.assert_allclose([t["probability"] for t in alone], [t["probability"] for t in batched], rtol=1e-5)
    # a whole shard: every sample of it
    shard = next((folder.parent / "corpus" / "shards").glob("*isolated*.tar"))
    _predict(capsys, "--model", str(folder / "model"), str(shard), "--out", str(tmp_path / "w.json"),
             "--no-progress")
    assert json.loads((tmp_path / "w.json").read_text())["predicted"] == len(list(iter_samples([shard])))


def test_video_goes_through_an_extraction_backend(run, tmp_path, capsys):
    _, folder, _ = run
    videos = write_synthetic_videos(tmp_path / "videos", 2, frames=40, empty=(1,))
    backend = "tests.extract_fakes:synthetic_backend"
    _predict(capsys, "--model", str(folder / "model"), str(videos[0]), "--backend", backend, "--poses-out",
             str(tmp_path / "poses"), "--out", str(tmp_path / "v.json"))
    (prediction,) = json.loads((tmp_path / "v.json").read_text())["predictions"]
    assert prediction["frames"] == 40 and prediction["estimator"] == "synthetic 1.0"
    assert (prediction["width"], prediction["height"]) == (96, 64)
    # the extracted .pose, predicted as a pose file: the same prediction
    _predict(capsys, "--model", str(folder / "model"), str(tmp_path / "poses" / "video_000.pose"), "--out",
             str(tmp_path / "vp.json"))
    assert json.loads((tmp_path / "vp.json").read_text())["predictions"][0]["top"] == prediction["top"]
    # in a batch, a video nobody is detected in is one error line
    _, err = _predict(capsys, "--model", str(folder / "model"), str(tmp_path / "videos"), "--backend", backend,
                      "--out", str(tmp_path / "vb.json"), "--no-progress", status=1)
    summary = json.loads((tmp_path / "vb.json").read_text())
    assert (summary["predicted"], summary["failed"]) == (1, 1)
    assert "no_person" in summary["errors"][0]["error"] and len(err.strip().splitlines()) == 1


def test_user_errors_are_one_line(run, tmp_path, capsys):
    _, folder, test = run
    model = str(folder / "model")
    pose = str(write_pose_79(tmp_path / "c.pose", test[0].pose, 25.0, 1280, 720))
    assert "no such folder, nor a Hub repository" in one_line_error(
        capsys, slp_predict, ["--model", tmp_path / "absent", pose])
    encoder_like = tmp_path / "encoder"
    encoder_like.mkdir()
    assert "not a fine-tuned head folder" in one_line_error(capsys, slp_predict, ["--model", str(encoder_like), pose])
    (tmp_path / "bad.npy").write_bytes(b"x")
    assert one_line_error(capsys, slp_predict, ["--model", model, str(tmp_path / "bad.npy")]).startswith(
        f"slp-predict: error: {tmp_path / 'bad.npy'}")
    write_synthetic_videos(tmp_path / "v", 1)
    assert "--backend" in one_line_error(capsys, slp_predict, ["--model", model, str(tmp_path / "v" / "video_000.mp4")])
    assert "not a retrieval head" in one_line_error(capsys, slp_predict, ["--model", model, pose, "--text", "hello"])
    assert "no sample 'absent'" in one_line_error(
        capsys, slp_predict, ["--model", model, next((folder.parent / "corpus" / "shards").glob("*.tar")), "--key",
                              "absent"])
    assert "--device" in one_line_error(capsys, slp_predict, ["--model", model, pose, "--device", "nonsense"])


def test_a_real_pose_file_runs_through(run, realdata, tmp_path, capsys):
    _, folder, _ = run
    path = realdata / "poses" / "FOOTBALL.mmpose_wholebody133.pose"
    out, _ = _predict(capsys, "--model", str(folder / "model"), str(path), "--out", str(tmp_path / "r.json"),
                      "--render", str(tmp_path / "r.gif"))
    (prediction,) = json.loads((tmp_path / "r.json").read_text())["predictions"]
    assert (prediction["frames"], prediction["width"], prediction["height"]) == (62, 640, 360)
    assert len(prediction["top"]) == 5 and np.isclose(prediction["top"][0]["probability"],
                                                      max(t["probability"] for t in prediction["top"]))
    assert (tmp_path / "r.gif").is_file() and str(path) in out


@pytest.mark.slow
def test_a_real_video_through_mediapipe(run, realdata, tmp_path, capsys):
    if find_mediapipe_python() is None:
        unavailable("MediaPipe's venv is missing: run `make mediapipe-venv` (or set SLP_MEDIAPIPE_PYTHON)")
    _, folder, _ = run
    out, _ = _predict(capsys, "--model", str(folder / "model"), str(realdata / "videos" / "FOOTBALL.mp4"),
                      "--backend", "mediapipe", "--out", str(tmp_path / "m.json"))
    (prediction,) = json.loads((tmp_path / "m.json").read_text())["predictions"]
    assert prediction["frames"] == 62 and "mediapipe" in prediction["estimator"] and len(prediction["top"]) == 5
    assert "FOOTBALL.mp4: " in out


@pytest.mark.parametrize("task", ["cslr", "slt"])
def test_sequence_heads_print_what_evaluation_predicts(task, tiny_mbart_dir, tmp_path, capsys):
    sentences = list(generate_sentences(SyntheticConfig(num_glosses=5, num_signers=4, sentences_per_signer=2,
                                                        languages=("de",))))[:4]
    folder, head = head_folder_of_untrained_head(task, tiny_mbart_dir, sentences, tmp_path / "model")
    sample = sentences[1]
    pose = write_pose_79(tmp_path / "s.pose", sample.pose, sample.meta.fps, sample.meta.width, sample.meta.height)
    _predict(capsys, "--model", str(folder), str(pose), "--out", str(tmp_path / "p.json"), "--render",
             str(tmp_path / "p.gif"))
    (prediction,) = json.loads((tmp_path / "p.json").read_text())["predictions"]
    expected = predict(head, sentences, 4)[1]  # evaluation, in a batch of the four sentences
    if task == "cslr":
        assert prediction["glosses"] == expected
    else:
        assert prediction["translation"] == expected and prediction["language"] == "de"
    assert (tmp_path / "p.gif").is_file()


def test_retrieval_ranks_sentences_for_clips_and_clips_for_a_sentence(tiny_mbart_dir, tmp_path, capsys):
    sentences = list(generate_sentences(SyntheticConfig(num_glosses=5, num_signers=4, sentences_per_signer=2,
                                                        languages=("en",))))[:5]
    folder, head = head_folder_of_untrained_head("retrieval", tiny_mbart_dir, sentences, tmp_path / "model")
    similarity = head.similarity_matrix(predict(head, sentences, 16))  # evaluation's (clip, text) scores
    clips = tmp_path / "clips"
    for s in sentences:
        write_pose_79(clips / f"{s.key}.pose", s.pose, s.meta.fps, s.meta.width, s.meta.height)
    (tmp_path / "texts.txt").write_text("".join(f"{s.meta.text}\n" for s in sentences))
    _predict(capsys, "--model", str(folder), str(clips), "--texts", str(tmp_path / "texts.txt"), "--top-k", "3",
             "--out", str(tmp_path / "v2t.json"), "--no-progress")
    records = {r["input"]: r for r in json.loads((tmp_path / "v2t.json").read_text())["predictions"]}
    for i, s in enumerate(sentences):
        matches = records[str(clips / f"{s.key}.pose")]["matches"]
        best = similarity[i].topk(3)
        assert [m["text"] for m in matches] == [sentences[j].meta.text for j in best.indices.tolist()]
        np.testing.assert_allclose([m["score"] for m in matches], best.values.numpy(), rtol=1e-5, atol=1e-6)
    out, _ = _predict(capsys, "--model", str(folder), str(clips), "--text", sentences[2].meta.text, "--out",
                      str(tmp_path / "t2v.json"), "--no-progress")
    summary = json.loads((tmp_path / "t2v.json").read_text())
    order = similarity[:, 2].argsort(descending=True).tolist()
    assert [r["input"] for r in summary["predictions"]] == [str(clips / f"{sentences[i].key}.pose") for i in order]
    assert [r["rank"] for r in summary["predictions"]] == [1, 2, 3, 4, 5] and "clips ranked for" in out
