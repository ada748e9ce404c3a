"""Predictions of a fine-tuned head (a head folder, :mod:`finetune.export`) on new inputs: videos (through the
estimators of :mod:`slp.extract`), pose files (every format :func:`slp.pose.readers.read_pose` reads, and the
79-point ``.pose`` files of :mod:`slp.pose.export`) and shard samples.

Every input becomes a clip as shards hold it (the 79 points, x / width, y / height, confidence) and goes through the
head's own evaluation collator: the same frames (ISLR: the middle frame of each of ``data.num_frames`` segments;
sequence tasks: the whole clip, evenly subsampled beyond ``data.max_frames``), the same normalisation
(:func:`slp.pose.normalize.normalize_pose` with the clip's frame size) and the run's precision, so a shard sample's
prediction here is the one evaluation makes. What comes out, by task:

- ``islr``: the ``top_k`` classes with their glosses and softmax probabilities;
- ``cslr``: the gloss sequence (CTC prefix beam search, the head's beam);
- ``slt``: the sentence (beam search, ``slt.beam_size``: 4 by default), in the head's language;
- ``retrieval``: for each clip, the ``top_k`` best of the candidate sentences (:meth:`Predictor.rank_texts`), or,
  for one sentence, the clips ranked (:meth:`Predictor.rank_clips`); scores are the head's similarity.

A problem of one input (a file that does not read, a video nobody is detected in, a missing shard key) is an
:class:`InputError` naming it, in one line; batch callers record it and go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch import nn
from tqdm import tqdm

from finetune.export import FinetunedModel
from slp.cli_errors import UserError, file_problem, read_user_text
from slp.data.schema import MBART_LANGUAGE_CODES, Sample, SampleMeta
from slp.data.shards import ReadStats, iter_samples
from slp.extract.pipeline import VIDEO_SUFFIXES
from slp.pose.export import read_pose_79
from slp.pose.readers import PoseFormatError, UnsupportedLayout, read_pose, to_shard_pose
from slp.render import VideoError, recorded_video, render_animation

SHARD_SUFFIX = ".tar"
LIST_SUFFIXES = (".txt", ".list")
#: What a folder given as input is searched for (recursively): videos, pose files, shards.
POSE_SUFFIXES = (".pose", ".json", ".npy", ".npz")


class InputError(Exception):
    """Input ``name`` cannot be predicted on; the message names it and says why, in one line."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class PredictInput:
    """A video, a pose file, or the sample ``key`` of a shard (``sample``: already read, when a whole shard is
    listed)."""

    path: str
    kind: str  # "video", "pose" or "shard"
    key: str = ""
    sample: Sample | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.path}:{self.key}" if self.key else self.path


@dataclass
class Clip:
    """A pose sequence to predict on, as a shard holds it: ``pose`` ``(T, 79, 3)``, x / width, y / height,
    confidence; ``video``: the video its points come from, when it is known and there (renders draw on it)."""

    name: str
    pose: np.ndarray
    fps: float
    width: int
    height: int
    estimator: str = ""
    video: str = ""

    def describe(self) -> dict[str, Any]:
        return {"input": self.name, "frames": int(len(self.pose)), "fps": self.fps, "width": self.width,
                "height": self.height, "estimator": self.estimator}


def input_kind(path: str | Path, pose_format: str = "auto") -> str:
    suffix = Path(path).suffix.lower()
    if pose_format != "auto":
        return "pose"
    return "video" if suffix in VIDEO_SUFFIXES else "shard" if suffix == SHARD_SUFFIX else "pose"


def read_shard(path: str) -> tuple[list[Sample], list[InputError]]:
    """The samples of shard ``path`` and one :class:`InputError` for each part the reader skipped (a malformed
    sample, the rest of a truncated or corrupt shard). The reader's own log line of each is left out: here each
    is an input that failed, reported and counted as such."""
    stats = ReadStats()
    reader_log = logging.getLogger(iter_samples.__module__)
    disabled, reader_log.disabled = reader_log.disabled, True
    try:
        samples = list(iter_samples([path], stats))
    finally:
        reader_log.disabled = disabled
    skipped = [InputError(f"{path}:{e['key']}" if e["key"] else path,
                          f"{path}: {e['key'] or 'the rest of the shard'} skipped: {e['reason']}")
               for e in stats.errors]
    return samples, skipped


def _shard_inputs(path: str) -> list[PredictInput | InputError]:
    if problem := file_problem(path):
        raise InputError(path, f"{path}: {problem}")
    samples, skipped = read_shard(path)
    if not samples and not skipped:
        raise InputError(path, f"{path}: no sample in this shard")
    return [*(PredictInput(path, "shard", s.key, s) for s in samples), *skipped]


def expand_inputs(paths: list[str], key: str | None = None, pose_format: str = "auto"
                  ) -> tuple[list[PredictInput | InputError], bool]:
    """The inputs ``paths`` name, and whether this is a batch (more than one input, or a folder, list file or
    whole shard given). A folder stands for the videos, pose files and shards under it (sorted); a list file
    (``.txt``, ``.list``) for the paths it lists (one a line, relative to its folder; blank lines and ``#``
    comments skipped); a shard with ``key`` for that sample, without for every sample. With ``pose_format``
    ``openpose_json`` a folder is one OpenPose sequence. An input that cannot even be listed (a shard that does
    not read), and each part of a shard that the reader skips, is an :class:`InputError` in its place. Raises
    :class:`UserError` for a path that does not exist."""
    items: list[PredictInput | InputError] = []
    batch = len(paths) > 1
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{raw}: no such file or folder")
        if path.is_dir() and pose_format != "openpose_json":
            batch = True
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in
                           (*VIDEO_SUFFIXES, *POSE_SUFFIXES, SHARD_SUFFIX))
            listed = [str(p) for p in found]
        elif path.suffix.lower() in LIST_SUFFIXES:
            batch = True
            lines = [line.strip() for line in read_user_text(path).splitlines()]
            listed = [str(path.parent / line) for line in lines if line and not line.startswith("#")]
        else:
            listed = [str(path)]
        for item in listed:
            kind = input_kind(item, pose_format)
            if kind != "shard":
                items.append(PredictInput(item, kind))
            elif key and item == str(path):
                items.append(PredictInput(item, "shard", key))
            else:
                batch = True
                try:
                    items += _shard_inputs(item)
                except InputError as exc:
                    items.append(exc)
    if key and not any(isinstance(i, PredictInput) and i.kind == "shard" for i in items):
        raise UserError(f"--key {key}: no shard (.tar) among the inputs")
    return items, batch


class VideoPoses:
    """Videos → pose-format ``.pose`` files, with a backend of :mod:`slp.extract` built and loaded once (the
    extraction of ``slp-curate extract``: the main signer, COCO-WholeBody 133, the video's fps and frame size).
    The files go to ``out_dir``, or to a temporary folder removed by :meth:`close`."""

    def __init__(self, spec, out_dir: str | Path | None = None):
        from slp.extract.pipeline import VideoExtractor

        self._temporary = tempfile.TemporaryDirectory(prefix="slp-predict-") if out_dir is None else None
        self.out_dir = Path(out_dir) if out_dir is not None else Path(self._temporary.name)
        self.extractor = VideoExtractor(spec, self.out_dir)

    def __call__(self, video: str) -> Path:
        """The ``.pose`` of ``video``; :class:`InputError` when it cannot be extracted. A backend that cannot run
        here raises :class:`slp.extract.BackendUnavailable`."""
        from slp.extract.pipeline import VideoJob, output_path

        key = Path(video).stem
        result = self.extractor(VideoJob(str(video), key))
        if result.status != "extracted":
            detail = result.detail.strip().splitlines()
            raise InputError(video, f"{video}: {result.reason} ({detail[-1] if detail else 'no detail'})")
        return output_path(self.out_dir, key)

    def close(self) -> None:
        self.extractor.close()
        if self._temporary is not None:
            self._temporary.cleanup()


def read_pose_clip(path: str | Path, name: str, *, pose_format: str = "auto", fps: float | None = None,
                   width: int | None = None, height: int | None = None) -> Clip:
    """A pose file as a clip: any format :func:`read_pose` reads (``fps`` / ``width`` / ``height`` for files that
    do not record them), or a 79-point ``.pose`` written by :func:`slp.pose.export.write_pose_79`."""
    try:
        seq = read_pose(path, pose_format, fps=fps, width=width, height=height)
    except UnsupportedLayout as exc:
        if pose_format not in ("auto", "pose") or Path(path).suffix.lower() != ".pose":
            raise InputError(name, str(exc)) from None
        try:
            exported = read_pose_79(path)  # the 79-point layout of slp.pose.export: already shard coordinates
        except ValueError:
            raise InputError(name, str(exc)) from None  # neither: the reader's message names the layout found
        return Clip(name, exported.pose, exported.fps, exported.width, exported.height)
    except PoseFormatError as exc:
        raise InputError(name, str(exc)) from None
    if seq.num_frames == 0:
        raise InputError(name, f"{path}: no frame")
    return Clip(name, to_shard_pose(seq), seq.fps, seq.width, seq.height, seq.estimator)


def _shard_clip(item: PredictInput) -> Clip:
    sample = item.sample
    if sample is None:
        if problem := file_problem(item.path):
            raise InputError(item.name, f"{item.path}: {problem}")
        samples, skipped = read_shard(item.path)
        sample = next((s for s in samples if s.key == item.key), None)
        if sample is None:
            damage = next((str(e).removeprefix(f"{item.path}: ") for e in skipped if e.name in (item.name, item.path)),
                          None)
            raise InputError(item.name, f"{item.path}: no sample {item.key!r} in this shard"
                                        + (f" (damaged: {damage})" if damage else ""))
    m = sample.meta
    return Clip(item.name, sample.pose, m.fps, m.width, m.height, m.pose_estimator)


def load_clip(item: PredictInput, *, videos: VideoPoses | None = None, pose_format: str = "auto",
              fps: float | None = None, width: int | None = None, height: int | None = None) -> Clip:
    """The clip of one input (``videos`` extracts videos); :class:`InputError` when it cannot be had. A video's
    clip, and a ``.pose`` file's whose source video (:func:`slp.render.recorded_video`) is there, knows its video."""
    if item.kind == "shard":
        return _shard_clip(item)
    if item.kind == "video":
        if videos is None:
            raise InputError(item.name, f"{item.path}: a video needs a pose estimator (--backend)")
        return dataclasses.replace(read_pose_clip(videos(item.path), item.name), video=item.path)
    clip = read_pose_clip(item.path, item.name, pose_format=pose_format, fps=fps, width=width, height=height)
    video = recorded_video(item.path) if Path(item.path).suffix.lower() == ".pose" else ""
    return dataclasses.replace(clip, video=video) if video and Path(video).is_file() else clip


def _check_clip(clip: Clip) -> Clip:
    pose = np.asarray(clip.pose)
    if pose.ndim != 3 or pose.shape[1:] != (79, 3) or len(pose) == 0:
        raise InputError(clip.name, f"{clip.name}: pose of shape {pose.shape} is not (T > 0, 79, 3)")
    if not (pose[..., 2] > 0).any():
        raise InputError(clip.name, f"{clip.name}: no point detected in any frame")
    return clip


def _padded(rows: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, L, d)`` of ``(l_i, d)`` rows zero-padded to the longest, and the ``(N, L)`` mask of their rows."""
    lengths = torch.tensor([len(r) for r in rows])
    return (nn.utils.rnn.pad_sequence(rows, batch_first=True).to(device),
            (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).to(device))


class Predictor:
    """A loaded head folder on ``device``, predicting clips batch by batch (:meth:`predict`).

    ``language``: the text language of SLT's output and of retrieval's sentences; by default the one language the
    head was trained on (a head trained on several needs it). ``top_k``: ISLR classes and retrieval matches kept.
    """

    def __init__(self, model: FinetunedModel, *, device: str | torch.device = "cpu", top_k: int = 5,
                 language: str | None = None):
        if top_k < 1:
            raise UserError(f"top_k={top_k}: must be at least 1")
        self.model = model
        self.task = model.task
        self.device = torch.device(device)
        self.head = model.head.to(self.device).eval()
        self.top_k = top_k
        self.language = self._language(language) if self.task in ("slt", "retrieval") else ""
        self.collate = self.head.collator(train=False)
        self.text_embeddings: list[torch.Tensor] = []
        self.texts: list[str] = []

    def _language(self, language: str | None) -> str:
        known = self.model.outputs.get("text_languages", [])
        if language is None:
            if len(known) != 1:
                raise UserError(f"{self.model.directory}: give the text language (the head was trained on "
                                f"{', '.join(known) or 'unrecorded languages'})")
            return known[0]
        if language not in MBART_LANGUAGE_CODES:
            raise UserError(f"language {language!r}: one of {', '.join(sorted(MBART_LANGUAGE_CODES))}")
        return language

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        """Evaluation's precision: the run's (bf16 autocast in a bf16 run), with no gradient."""
        bf16 = self.model.config.mixed_precision == "bf16"
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            yield

    def samples(self, clips: list[Clip]) -> list[Sample]:
        """The clips as the samples the head's collator reads (frame size, and the text language the decoder
        starts from or the sentences are in)."""
        return [Sample(clip.name, np.asarray(clip.pose), SampleMeta(
            dataset="slp-predict", split="test", sign_language="", text_language=self.language,
            source_id=clip.name, fps=clip.fps, width=clip.width, height=clip.height)) for clip in clips]

    def raw_outputs(self, clips: list[Clip]) -> list:
        """``head.predict`` of the clips: one batch."""
        batch = send_to_device(self.collate(self.samples(clips)), self.device)
        with self._precision():
            return self.head.predict(**batch)

    def predict(self, clips: list[Clip]) -> list[dict[str, Any]]:
        """One prediction per clip (see the module docstring); retrieval ranks the sentences of
        :meth:`set_texts`."""
        clips = [_check_clip(c) for c in clips]
        outputs = self.raw_outputs(clips)
        if self.task == "islr":
            names = self.model.outputs.get("class_names", [])
            out = []
            for logits in outputs:
                probabilities = logits.float().softmax(dim=-1)
                top = probabilities.topk(min(self.top_k, len(probabilities)))
                out.append({"top": [{"class": int(k), "gloss": names[k] if k < len(names) else "",
                                     "probability": float(p)} for p, k in zip(top.values, top.indices.tolist())]})
            return out
        if self.task == "cslr":
            return [{"glosses": list(glosses)} for glosses in outputs]
        if self.task == "slt":
            return [{"translation": text, "language": self.language} for text in outputs]
        if not self.texts:
            raise UserError("retrieval: give the candidate sentences (set_texts) or rank clips for one sentence")
        scores = self.similarity([sign for sign, _ in outputs], self.text_embeddings)
        out = []
        for row in scores:
            top = row.topk(min(self.top_k, len(row)))
            out.append({"matches": [{"text": self.texts[j], "score": float(s)}
                                    for s, j in zip(top.values, top.indices.tolist())]})
        return out

    # Retrieval

    def embed_texts(self, texts: list[str]) -> list[torch.Tensor]:
        """F_text ``(m_i, d_e)`` of each sentence (in :attr:`language`) over its valid tokens."""
        head = self.head
        ids, mask = head.text_tokenizer(texts, [self.language] * len(texts))
        with self._precision():
            text = head.alignment.text_embeddings(head.text_features(ids.to(self.device), mask.to(self.device)))
        return [t[m] for t, m in zip(text.float().cpu(), mask)]

    def set_texts(self, texts: list[str]) -> None:
        """The candidate sentences :meth:`predict` ranks for each clip."""
        texts = [t.strip() for t in texts if t.strip()]
        if not texts:
            raise UserError("retrieval: no candidate sentence")
        self.texts, self.text_embeddings = texts, self.embed_texts(texts)

    def sign_embeddings(self, clips: list[Clip]) -> list[torch.Tensor]:
        """F_sign ``(n_i, d_e)`` of each clip over its valid pooled clips."""
        return [sign for sign, _ in self.raw_outputs([_check_clip(c) for c in clips])]

    def similarity(self, signs: list[torch.Tensor], texts: list[torch.Tensor]) -> torch.Tensor:
        """``(clips, texts)`` scores, as evaluation scores them (:meth:`RetrievalHead.similarity_matrix`: blocks of
        ``chunk_size`` texts)."""
        alignment = self.head.alignment
        sign, sign_mask = _padded(signs, self.device)
        text, text_mask = _padded(texts, self.device)
        block = alignment.cfg.chunk_size
        with self._precision():
            return torch.cat([alignment.similarity(sign, sign_mask, text[j:j + block], text_mask[j:j + block],
                                                   block).float().cpu() for j in range(0, len(texts), block)], dim=1)

    def rank_clips(self, text: str, signs: list[torch.Tensor]) -> list[tuple[int, float]]:
        """(index, score) of the clips (their :meth:`sign_embeddings`) for the sentence ``text``, best first."""
        scores = self.similarity(signs, self.embed_texts([text]))[:, 0]
        return [(i, float(scores[i])) for i in scores.argsort(descending=True, stable=True).tolist()]


def caption(task: str, prediction: dict[str, Any]) -> str:
    """A one-line caption of a prediction, for a rendered animation."""
    if task == "islr":
        return "  ".join(f"{t['gloss'] or '#' + str(t['class'])} {t['probability']:.2f}" for t in prediction["top"][:3])
    if task == "cslr":
        return " ".join(prediction["glosses"]) or "(no gloss)"
    if task == "slt":
        return prediction["translation"] or "(empty)"
    if "matches" in prediction:
        best = prediction["matches"][0]
        return f"{best['text']} ({best['score']:.3f})"
    return f"rank {prediction['rank']} for the sentence ({prediction['score']:.3f})"


def describe(task: str, prediction: dict[str, Any]) -> str:
    """A prediction in one human-readable line."""
    if task == "islr":
        return ", ".join(f"{t['gloss'] or '#' + str(t['class'])} {t['probability']:.3f}" for t in prediction["top"])
    if task == "retrieval" and "matches" in prediction:
        return " | ".join(f"{m['text']} ({m['score']:.3f})" for m in prediction["matches"])
    return caption(task, prediction)


def render_prediction(clip: Clip, text: str, out_path: str | Path, max_side: int = 480) -> Path:
    """A GIF / MP4 of the clip's pose with ``text`` as the caption, on the frames of the clip's video when it has
    one, its longer side at most ``max_side`` pixels. Raises :class:`InputError` when the video does not read."""
    scale = min(1.0, max_side / max(clip.width, clip.height))
    try:
        return render_animation(np.asarray(clip.pose, dtype=np.float32), out_path,
                                width=max(1, round(clip.width * scale)), height=max(1, round(clip.height * scale)),
                                fps=clip.fps, caption=text, video=clip.video or None)
    except VideoError as exc:
        raise InputError(clip.name, f"{clip.name}: cannot render on its video: {exc}") from None


def run_predictions(predictor: Predictor, items: list[PredictInput | InputError], load: Callable[[PredictInput], Clip],
                    *, batch_size: int = 16, query: str | None = None,
                    render: Callable[[PredictInput], Path | None] | None = None, progress: bool = True,
                    report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Predict every input, ``batch_size`` clips at a time, with a progress bar (inputs/s, ETA); returns the
    summary: counts that reconcile (``inputs`` = ``predicted`` + ``failed``), one record per prediction (the clip's
    frames, fps, frame size and estimator, the prediction, the render) and one per failed input (``errors``, each
    also passed to ``report`` as it happens). ``load`` reads an input (:func:`load_clip`); ``render`` names the
    animation of an input (None: none), drawn on the clip's video when it knows one (``render_video``; a video
    that does not read fails the input). Retrieval with ``query`` ranks the clips for that sentence (records in rank
    order) instead of ranking the predictor's sentences for each clip."""
    start = time.time()
    records: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    signs: list[torch.Tensor] = []
    kept: list[tuple[PredictInput, Clip]] = []  # the clips to render once the query's ranking is known
    pending: list[tuple[PredictInput, Clip]] = []
    bar = tqdm(total=len(items), unit="input", desc=f"predicting ({predictor.task})", disable=not progress)

    def fail(name: str, message: str) -> None:
        message = " ".join(message.splitlines())  # one line, whatever a reader's message holds
        errors.append({"input": name, "error": message})
        if report is not None:
            report(message)

    def finish(item: PredictInput, clip: Clip, prediction: dict[str, Any]) -> None:
        record = {**clip.describe(), **prediction}
        path = render(item) if render is not None else None
        if path is not None:
            try:
                record["render"] = str(render_prediction(clip, caption(predictor.task, prediction), path))
            except InputError as exc:  # its video does not read: the input fails, with that reason
                fail(exc.name, str(exc))
                return
            if clip.video:
                record["render_video"] = clip.video
        records.append(record)

    def flush() -> None:
        clips = [clip for _, clip in pending]
        if query is not None:
            signs.extend(predictor.sign_embeddings(clips))
            kept.extend(pending)
        else:
            for (item, clip), prediction in zip(pending, predictor.predict(clips)):
                finish(item, clip, prediction)
        bar.update(len(pending))
        pending.clear()

    for item in items:
        if isinstance(item, InputError):
            fail(item.name, str(item))
            bar.update()
            continue
        try:
            pending.append((item, _check_clip(load(item))))
        except InputError as exc:
            fail(exc.name, str(exc))
            bar.update()
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    bar.close()
    summary: dict[str, Any] = {"task": predictor.task, "device": str(predictor.device)}
    if query is not None:
        for rank, (index, score) in enumerate(predictor.rank_clips(query, signs) if kept else []):
            finish(*kept[index], {"rank": rank + 1, "score": score})
        summary["query"] = query
    seconds = time.time() - start
    summary.update(inputs=len(items), predicted=len(records), failed=len(errors), predictions=records,
                   errors=errors, seconds=round(seconds, 3), inputs_per_s=round(len(items) / max(seconds, 1e-9), 3))
    return summary
