"""The paper's Tables XIII (pre-training or not) and XIV (pretext tasks) on real signers: ISLR on WLASL100 / WLASL300
from the MediaPipe hand landmarks in ``../shared/realdata/wlasl_hands`` (research use only: read from
``--realdata``, never copied into the project), at CPU size, as mean ± std over seeds.

Data (written once under ``OUT/data``, reused while its settings are unchanged):

- Conversion. Each clip's ``(T, 2, 21, 2)`` landmarks (x, y as fractions of the frame; -1 = no hand in that slot)
  become a shard pose ``(T, 79, 3)`` with both hands and the body's two wrists, which are the hands' roots (the
  same joint); the rest of the body and the face are missing (confidence 0). The wrists matter: normalisation puts
  each hand in its own box, so without them the encoder would not know where the hands are.
  The source's two slots are in detection order, not left / right, so the side is decided here: signers face the
  camera, so the signer's right hand is the one on the image's left. Per clip the midline is the median, over the
  frames that show two hands, of their wrists' mean x (0.5 when no frame shows two); in each frame the slot whose
  wrist lies left of the other one's, or with one hand seen, left of the midline, is the signer's right hand
  (COCO-WholeBody ``right_hand``), the other the left hand. Hands that cross swap sides for those frames. The
  21 MediaPipe points are in COCO-WholeBody hand order; the pose goes through
  :func:`slp.pose.readers.to_shard_pose`, as a reader's would. The frame size is not recorded: every clip is given
  640 × 480 (only the aspect matters: the hand crops are square in pixels); fps 25. Each sample is paired with
  "This word is {gloss}." (en), its label the WLASL class (``wlasl_class_list.txt``).
- Fine-tuning set of WLASL{N}: the clips of class < N, with the signer ids of ``WLASL{N}.json``, split by signer.
  Test signers are chosen greedily until every gloss has a test clip: each step takes the signer with the largest
  (glosses it adds to the test set)² / (its clips), among those whose move leaves every gloss of theirs a training
  clip (ties: more glosses, then the smaller id): many new glosses for few clips, so the test set covers every gloss
  with a few signers without taking the largest signers, most of the training data. Glosses that cannot have both a
  test and a training clip are dropped (counted in the printout). Dev signers (checkpoint selection) are chosen the
  same way among the others until the dev set holds 10 % of the clips. No signer is in two splits.
- Pre-training set of WLASL{N}: every clip of class >= N (no fine-tuning gloss is seen in pre-training), split train,
  in a fixed shuffled order (the streaming loader's shuffle buffer then mixes glosses within a batch).
- Text model: the real ``facebook/mbart-large-cc25`` is out of reach here. The stand-in
  (:func:`slp.text.tiny.build_tiny_mbart`) is built with a word-level tokenizer on the texts of every gloss, so
  each gloss word is one token, not spelt letter by letter (``--text-model`` names the real one on a GPU machine).

Variants, each for every seed and subset (the encoder is ``configs/pretrain/tiny.yaml``'s):

- ``scratch``: ISLR from a randomly initialised encoder (Table XIII's α = 0);
- ``pr+stc``, ``pr``, ``stc``: pre-trained on the pre-training set (:func:`pretrain_on_one_device`) with both
  objectives (STC weighted ``--lambda-stc``: 0.1 by default, where the paper has 1, which gains less at this size:
  README, "Real signers"), pose reconstruction only (the ablations' ``NO_STC``), or sign-text contrast only
  (their ``NO_PR``, and no masking: m = 0 without a reconstruction to learn), then fine-tuned from the saved
  encoder. Each variant is pre-trained once (``--pretrain-seed``) and every seed fine-tunes from that encoder:
  the seeds' spread is the fine-tuning's, as a user who pre-trains once and fine-tunes sees it;
- ``plain``: not slp at all, for context: a two-hand GRU over 32 resampled frames of wrist-relative hand shapes and
  wrist positions, trained with AdamW on the same training split (:func:`train_plain`).

Every slp variant is fine-tuned through ``slp-finetune``'s ``run_task`` with
``configs/finetune/islr/wlasl_hands_cpu.yaml`` (label smoothing 0.2, batch 32, lr 1e-3, StepLR × 0.1 at 2/3 of the
epochs; the best dev epoch; the encoder at ``--encoder-lr-scale`` × lr when pre-trained, frozen or warmed up if
``--finetune-overrides`` say so, and from scratch learning as the head does from the first step) and its encoder
is linear-probed (:func:`finetune.linear_probe.linear_probe`, fitted on the training signers, scored on the test
signers). Recorded per run: test per-instance top-1 / top-5, probe top-1, the pre-training's final
L_PR and L_STC (mean of the last 50 steps) and the seconds each stage took. Each run's ``result.json`` is kept
under ``OUT/runs/<subset>/<variant>-<settings digest>/seed<k>`` and each pre-training under
``OUT/runs/<subset>/pretrain-<variant>-<settings digest>``, so a second call only runs what is missing (the digests
name the word-level stand-in by its folder, so a moved or differently spelt ``--out`` finds its runs again). A killed
call takes its jobs with it, and a pre-training it left unfinished goes on from its last checkpoint (every 250 steps)
to the encoder and losses of an uninterrupted run.

Prints a table per subset and writes ``OUT/real_islr-wlasl<subsets>-<steps>steps-<epochs>epochs-lambda<λ>.json``
and a figure per subset beside it (``real_islr-wlasl<N>-<steps>steps-<epochs>epochs-lambda<λ>.png``; a digest of
any overrides follows λ).

    python benchmarks/real_islr.py --out runs/real_islr --jobs 2
    python benchmarks/real_islr.py --subsets 100 --seeds 0 --steps 20 --epochs 1 --variants scratch pr+stc plain
    python benchmarks/real_islr.py --text-model facebook/mbart-large-cc25 --steps 20000 --out runs/real_islr_gpu
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.ablations import NO_PR, NO_STC, Table, Variant, plot_table, run_grid, summarise  # noqa: E402
from finetune import islr  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from finetune.data import load_split, sample_frames  # noqa: E402
from finetune.linear_probe import linear_probe  # noqa: E402
from finetune.trainer import run_task  # noqa: E402
from pretrain.config import PretrainRunConfig  # noqa: E402
from pretrain.single_device import pretrain_on_one_device  # noqa: E402
from slp.config import load_config  # noqa: E402
from slp.data.schema import Sample, SampleMeta, make_key  # noqa: E402
from slp.data.shards import MANIFEST_NAME, ShardWriter, manifest_row, write_manifest, write_summary  # noqa: E402
from slp.metrics import islr_accuracy  # noqa: E402
from slp.models.pretraining import PretrainingModel  # noqa: E402
from slp.models.sign_encoder import SignPoseEncoder  # noqa: E402
from slp.pose.convert import clean_keypoints  # noqa: E402
from slp.pose.layout import COCO_WHOLEBODY_POINT_NAMES, LEFT_HAND, NUM_WHOLEBODY_POINTS, RIGHT_HAND  # noqa: E402
from slp.pose.readers import PoseSequence, to_shard_pose  # noqa: E402

REALDATA = Path(os.environ.get("SLP_REALDATA", REPO.parent / "shared" / "realdata"))
SOURCE = "wlasl_hands"
DATASET = "wlasl"
#: The frame size every clip is given (the source records none; only the aspect matters) and the fps of WLASL.
FRAME_WIDTH, FRAME_HEIGHT, FPS = 640, 480, 25.0
TEXT = "This word is {}."
MISSING = -1.0  # the source's coordinate of a slot without a hand
#: Bumped when the conversion or the split rule changes: part of the data sets' settings, so they are rewritten.
CONVERSION_VERSION = 2  # 2: the body's wrists are the hands' roots
DEV_FRACTION = 0.1
SHARD_SAMPLES = 500
PRETRAIN_ORDER_SEED = 0
FINETUNE_CONFIG = REPO / "configs" / "finetune" / "islr" / "wlasl_hands_cpu.yaml"
#: The fine-tuning options of a pre-trained encoder, as they are for one trained from scratch.
FROM_SCRATCH = ("optim.encoder_lr_scale=1.0", "optim.encoder_frozen_epochs=0", "optim.encoder_warmup_epochs=0")
LOSS_TAIL = 50  # the final pre-training losses are the mean of this many last steps
HAND_POINTS = 21
RIGHT_HAND_133 = COCO_WHOLEBODY_POINT_NAMES.index("right_hand_0")
LEFT_HAND_133 = COCO_WHOLEBODY_POINT_NAMES.index("left_hand_0")
RIGHT_WRIST_133, LEFT_WRIST_133 = (COCO_WHOLEBODY_POINT_NAMES.index(n) for n in ("right_wrist", "left_wrist"))


@dataclass(frozen=True)
class RealVariant(Variant):
    """A row: ``overrides`` of the pre-training config (``pretrain``: pre-trained, else from scratch); ``slp``: False
    for the plain GRU baseline."""

    title: str = ""
    slp: bool = True


VARIANTS = {v.label: v for v in (
    RealVariant("scratch", pretrain=False, title="none (α = 0)"),
    RealVariant("pr+stc", title="PR + STC"),
    RealVariant("pr", NO_STC, title="PR only"),
    RealVariant("stc", (*NO_PR, "loss.mask_ratio=0"), title="STC only (m = 0)"),
    RealVariant("plain", pretrain=False, slp=False, title="none: two-hand GRU (not slp)"),
)}
METRICS = {"top1": "fine-tuned top-1 (%)", "top5": "fine-tuned top-5 (%)", "probe": "probe top-1 (%)"}
LOSSES = {"loss_pr": "final L_PR", "loss_stc": "final L_STC"}


# --- the source ----------------------------------------------------------------------------------------------------

class Source:
    """The landmark files, read lazily: ``clip(video_id)`` is its ``(T, 2, 21, 2)`` array; ``classes`` maps each
    video id that has landmarks to its WLASL class, ``glosses`` each class to its gloss."""

    def __init__(self, folder: Path):
        files = sorted(folder.glob("landmarks_part*.npz"))
        needed = [folder / n for n in ("nslt_2000.json", "wlasl_class_list.txt")]
        if not files or not all(p.is_file() for p in needed):
            raise SystemExit(f"{folder}: no WLASL hand landmarks (landmarks_part*.npz, nslt_2000.json, "
                             f"wlasl_class_list.txt); give --realdata or $SLP_REALDATA")
        self.folder = folder
        self._part_of = {key: part for part in map(np.load, files) for key in part.files}
        actions = json.loads((folder / "nslt_2000.json").read_text())
        self.classes = {key: int(actions[key]["action"][0]) for key in sorted(self._part_of)}
        self.glosses = {int(c): g.strip() for c, g in (line.split("\t", 1) for line in
                                                       (folder / "wlasl_class_list.txt").read_text().splitlines()
                                                       if line.strip())}
        # The files' names and sizes: the data sets' settings change with them.
        self.fingerprint = {p.name: p.stat().st_size for p in [*files, *needed]}

    def clip(self, video_id: str) -> np.ndarray:
        return self._part_of[video_id][video_id]

    def signers(self, subset: int) -> dict[str, str]:
        """``video_id → signer id`` of ``WLASL{subset}.json`` (the only files with signer ids)."""
        path = self.folder / f"WLASL{subset}.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no signer ids for WLASL{subset} (there are WLASL100.json and WLASL300.json)")
        return {inst["video_id"]: str(inst["signer_id"]) for entry in json.loads(path.read_text())
                for inst in entry["instances"]}

    def texts(self) -> list[str]:
        """The text of every gloss that has clips: the pre-training and fine-tuning texts."""
        return [TEXT.format(self.glosses[c]) for c in sorted(set(self.classes.values()))]


# --- conversion ----------------------------------------------------------------------------------------------------

def hands_by_side(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The source's ``(T, 2, 21, 2)`` detection-order slots → the signer's ``(right, left)`` hands, each
    ``(T, 21, 3)`` float32 (x, y as fractions of the frame, confidence 1 seen / 0 missing, missing points at 0).

    The side rule is the module docstring's. A slot holds a hand when its wrist is seen (the source writes a slot's
    21 points or none)."""
    xy = landmarks.astype(np.float32)
    seen = ~(xy == MISSING).all(-1)  # (T, 2, 21)
    present = seen[:, :, 0]
    wrist_x = xy[:, :, 0, 0]
    both = present.all(1)
    midline = float(np.median(wrist_x[both].mean(1))) if both.any() else 0.5
    # The slot of the signer's right hand: the one further left of two; the only one when left of the midline.
    right_slot = np.where(both, (wrist_x[:, 1] < wrist_x[:, 0]).astype(np.int64),
                          np.where(present[:, 0], (wrist_x[:, 0] >= midline).astype(np.int64),
                                   (wrist_x[:, 1] < midline).astype(np.int64)))
    frames = np.arange(len(xy))
    hands = []
    for slot in (right_slot, 1 - right_slot):
        valid = seen[frames, slot] & present[frames, slot][:, None]
        hands.append(clean_keypoints(xy[frames, slot], valid.astype(np.float32)))
    return hands[0], hands[1]


def shard_pose(landmarks: np.ndarray) -> np.ndarray:
    """The shard pose ``(T, 79, 3)`` float16 of a clip: both hands by side (:func:`hands_by_side`), nothing else."""
    right, left = hands_by_side(landmarks)
    keypoints = np.zeros((len(landmarks), NUM_WHOLEBODY_POINTS, 3), dtype=np.float32)
    pixels = np.array([FRAME_WIDTH, FRAME_HEIGHT, 1.0], dtype=np.float32)
    keypoints[:, RIGHT_HAND_133:RIGHT_HAND_133 + HAND_POINTS] = right * pixels
    keypoints[:, LEFT_HAND_133:LEFT_HAND_133 + HAND_POINTS] = left * pixels
    # The body's wrists are the hands' roots (the same joint): the normalisation puts each hand in its own box, and
    # the body points, scaled by the frame, are what tells the encoder where the hands are.
    keypoints[:, RIGHT_WRIST_133] = keypoints[:, RIGHT_HAND_133]
    keypoints[:, LEFT_WRIST_133] = keypoints[:, LEFT_HAND_133]
    return to_shard_pose(PoseSequence(keypoints, FPS, FRAME_WIDTH, FRAME_HEIGHT))


def to_sample(source: Source, video_id: str, split: str, signer: str = "") -> Sample:
    label = source.classes[video_id]
    gloss = source.glosses[label]
    meta = SampleMeta(dataset=DATASET, split=split, sign_language="ASL", text_language="en", source_id=video_id,
                      fps=FPS, width=FRAME_WIDTH, height=FRAME_HEIGHT, signer=signer, text=TEXT.format(gloss),
                      gloss=gloss, label=label, paired=True, pose_layout="mediapipe_hands_2x21",
                      pose_estimator="mediapipe hands")
    return Sample(make_key(DATASET, video_id), shard_pose(source.clip(video_id)), meta)


# --- the signer-independent split ----------------------------------------------------------------------------------

@dataclass
class SignerSplit:
    signers: dict[str, list[str]]  # split → its signers
    dropped: list[int]  # glosses that cannot have both a test and a training clip


def _greedy_signers(clips: Sequence[tuple[int, str]], candidates: set[str], training: Counter,
                    enough: int | None) -> list[str]:
    """Signers moved out of training one by one (``training``, clips per gloss, is updated), the module docstring's
    rule, until no candidate adds a gloss, or (``enough``) once the chosen hold that many clips."""
    glosses_of: dict[str, Counter] = defaultdict(Counter)
    for gloss, signer in clips:
        glosses_of[signer][gloss] += 1
    chosen: list[str] = []
    covered: set[int] = set()
    while enough is None or sum(sum(glosses_of[s].values()) for s in chosen) < enough:
        best = None
        for signer in sorted(candidates - set(chosen), key=lambda s: (len(s), s)):
            counts = glosses_of[signer]
            gain = len(counts.keys() - covered)
            if gain == 0 or any(training[g] - n < 1 for g, n in counts.items()):
                continue
            score = (gain * gain / sum(counts.values()), gain)
            if best is None or score > best[0]:
                best = (score, signer)
        if best is None:
            break
        chosen.append(best[1])
        covered |= glosses_of[best[1]].keys()
        training.subtract(glosses_of[best[1]])
    return chosen


def signer_independent_split(clips: Sequence[tuple[int, str]], dev_fraction: float = DEV_FRACTION) -> SignerSplit:
    """Train / dev / test signers of ``(gloss, signer)`` clips (the module docstring's rule)."""
    signers_of: dict[int, set[str]] = defaultdict(set)
    for gloss, signer in clips:
        signers_of[gloss].add(signer)
    dropped = {g for g, s in signers_of.items() if len(s) < 2}
    kept = [(g, s) for g, s in clips if g not in dropped]
    training = Counter(g for g, _ in kept)
    test = _greedy_signers(kept, {s for _, s in kept}, training, None)
    tested = {g for g, s in kept if s in test}
    dropped |= set(training) - tested
    kept = [(g, s) for g, s in kept if g in tested]
    others = {s for _, s in kept} - set(test)
    training = Counter(g for g, s in kept if s in others)
    dev = _greedy_signers(kept, others, training, round(dev_fraction * len(kept)))
    train = sorted(others - set(dev), key=lambda s: (len(s), s))
    split = SignerSplit({"train": train, "dev": dev, "test": test}, sorted(dropped))
    assert not (set(train) & set(dev) or set(train) & set(test) or set(dev) & set(test)), "a signer in two splits"
    return split


# --- data sets -----------------------------------------------------------------------------------------------------

def write_set(folder: Path, samples: Iterable[Sample], settings: dict, total: int, **summary) -> dict:
    """Shards, manifest and ``summary.json`` of ``samples`` in ``folder``, unless it already holds them with these
    ``settings``; returns the summary."""
    settings = json.loads(json.dumps(settings))
    done = folder / "summary.json"
    if done.is_file() and (written := json.loads(done.read_text()))["settings"] == settings:
        return written
    shutil.rmtree(folder, ignore_errors=True)
    rows = []
    with ShardWriter(folder / "shards", prefix=DATASET, max_samples=SHARD_SAMPLES) as writer:
        for sample in tqdm(samples, total=total, desc=f"writing {folder.name}", unit="clip"):
            writer.write(sample)
            rows.append(manifest_row(sample, f"{DATASET}-{writer.index:06d}.tar"))
    write_manifest(rows, folder / MANIFEST_NAME)
    write_summary(done, {"settings": settings, "samples": len(rows), **summary})
    return json.loads(done.read_text())


def split_counts(source: Source, members: dict[str, str], split: SignerSplit) -> dict[str, dict[str, int]]:
    """Clips, signers and glosses of each split (``members``: video id → split)."""
    counts = {}
    for name, signers in split.signers.items():
        ids = [v for v, s in members.items() if s == name]
        counts[name] = {"clips": len(ids), "signers": len(signers),
                        "glosses": len({source.classes[v] for v in ids})}
    return counts


def prepare_finetuning(source: Source, subset: int, out: Path) -> dict:
    """WLASL{subset}'s fine-tuning set, split by signer; returns its summary (``shards``, split counts)."""
    signer_of = source.signers(subset)
    ids = [v for v, c in source.classes.items() if c < subset]
    if unknown := [v for v in ids if v not in signer_of]:
        raise SystemExit(f"WLASL{subset}.json: no signer id for {len(unknown)} clips of class < {subset} "
                         f"({', '.join(unknown[:3])}, ...)")
    split = signer_independent_split([(source.classes[v], signer_of[v]) for v in ids])
    split_of_signer = {s: name for name, signers in split.signers.items() for s in signers}
    members = {v: split_of_signer[signer_of[v]] for v in ids
               if source.classes[v] not in split.dropped and signer_of[v] in split_of_signer}
    folder = out / "data" / f"wlasl{subset}"
    settings = {"conversion": CONVERSION_VERSION, "frame": [FRAME_WIDTH, FRAME_HEIGHT], "fps": FPS,
                "dev_fraction": DEV_FRACTION, "classes": [0, subset], "source": source.fingerprint}
    summary = write_set(folder, (to_sample(source, v, members[v], signer_of[v]) for v in members), settings,
                        len(members), splits=split_counts(source, members, split), signers=split.signers,
                        dropped_glosses=[source.glosses[g] for g in split.dropped])
    return {**summary, "shards": str(folder / "shards" / "*.tar")}


def prepare_pretraining(source: Source, subset: int, out: Path) -> dict:
    """WLASL{subset}'s pre-training set: every clip of class >= subset, in a fixed shuffled order; returns its shard
    pattern, sample count and settings. Each subset has its own, so one subset's runs do not depend on which others
    a call asks for."""
    end = max(source.classes.values()) + 1
    ids = [v for v, c in source.classes.items() if c >= subset]
    order = np.random.default_rng(PRETRAIN_ORDER_SEED).permutation(len(ids))
    settings = {"conversion": CONVERSION_VERSION, "frame": [FRAME_WIDTH, FRAME_HEIGHT], "fps": FPS,
                "order_seed": PRETRAIN_ORDER_SEED, "classes": [subset, end], "source": source.fingerprint}
    folder = out / "data" / f"pretrain_classes{subset}-{end - 1}"
    summary = write_set(folder, (to_sample(source, ids[k], "train") for k in order), settings, len(ids))
    return {"shards": [str(folder / "shards" / "*.tar")], "samples": summary["samples"],
            "settings": summary["settings"]}


def prepare_text_model(source: Source, out: Path) -> str:
    """The tiny mBART stand-in with a word-level tokenizer on every gloss's text (built once)."""
    from slp.text.tiny import build_tiny_mbart

    texts = source.texts()
    folder = out / f"tiny_mbart_word-{hashlib.sha1(json.dumps(texts).encode()).hexdigest()[:8]}"
    if not (folder / "config.json").is_file():
        build_tiny_mbart(folder, texts, model_type="word")
    return str(folder)


def text_token_agreement(text_model: str, texts: list[str], sample: int = 300) -> dict:
    """How much the frozen text features tell glosses apart, token by token: for each token position, the mean
    cosine between the features of different texts (1: that token's feature is the same whatever the gloss, so it
    cannot tell texts apart), over the first ``sample`` texts of the most common token count. L_STC can only learn
    from the positions below 1."""
    import torch.nn.functional as F

    from slp.text import FrozenTextEncoder

    encoder = FrozenTextEncoder.from_pretrained(text_model)
    ids, mask = encoder.text_tokenizer(texts, ["en"] * len(texts))
    lengths = mask.sum(1)
    common = int(lengths.mode().values)
    keep = (lengths == common).nonzero()[:, 0][:sample]
    with torch.no_grad():
        features = F.normalize(encoder(ids[keep], mask[keep])[:, :common], dim=-1)
    off_diagonal = ~torch.eye(len(keep), dtype=torch.bool)
    cosines = [float((features[:, k] @ features[:, k].T)[off_diagonal].mean()) for k in range(common)]
    return {"tokens": common, "texts": len(keep), "mean_cosine_by_position": [round(c, 3) for c in cosines],
            "example": encoder.text_tokenizer.decode(ids[keep[0]][mask[keep[0]]].tolist())}


# --- the plain baseline --------------------------------------------------------------------------------------------

PLAIN_FRAMES = 32
PLAIN_FEATURES = 2 * ((HAND_POINTS - 1) * 2 + 2 + 1)  # per hand: wrist-relative points, wrist position, seen


def plain_features(sample: Sample, train: bool) -> np.ndarray:
    """``(32, 86)``: the clip resampled to 32 frames (one per equal segment, random in it in training, as ISLR
    samples them; a shorter clip's frames repeated evenly), each frame's two hands as points relative to the wrist,
    the wrist relative to the clip's mean wrist, and whether the hand is seen; lengths in units of the clip's
    median hand size (wrist to middle-finger base), x scaled to pixels of the frame's height."""
    length = len(sample.pose)
    frames = (sample_frames(length, PLAIN_FRAMES, train).numpy() if length > PLAIN_FRAMES
              else np.linspace(0, length - 1, PLAIN_FRAMES).round().astype(np.int64))
    pose = sample.pose[frames].astype(np.float32)
    hands = np.stack([pose[:, RIGHT_HAND], pose[:, LEFT_HAND]], 1)  # (32, 2, 21, 3)
    xy = hands[..., :2] * np.array([sample.meta.width / sample.meta.height, 1.0], dtype=np.float32)
    seen = hands[..., 2] > 0
    present = seen[..., 0]
    wrist = xy[:, :, 0]
    sizes = np.linalg.norm(xy[:, :, 9] - wrist, axis=-1)[present & seen[..., 9]]
    scale = max(float(np.median(sizes)), 1e-3) if sizes.size else 1.0
    centre = wrist[present].mean(0) if present.any() else np.zeros(2, dtype=np.float32)
    shape = (xy[:, :, 1:] - wrist[:, :, None]) / scale * seen[:, :, 1:, None]
    position = (wrist - centre) / scale * present[..., None]
    return np.concatenate([shape.reshape(PLAIN_FRAMES, 2, -1), position, present[..., None]], -1).reshape(
        PLAIN_FRAMES, PLAIN_FEATURES).astype(np.float32)


class TwoHandGRU(nn.Module):
    """Per-frame features → a two-layer bidirectional GRU → the mean over frames → class scores."""

    def __init__(self, num_classes: int, hidden: int = 128):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(PLAIN_FEATURES, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.2)
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * hidden, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.gru(self.embed(features))[0].mean(1))


def train_plain(train: list[Sample], dev: list[Sample], test: list[Sample], num_classes: int, epochs: int, seed: int,
                device: torch.device, batch_size: int = 32, lr: float = 1e-3) -> dict:
    """The plain baseline with the fine-tuning's schedule (AdamW, StepLR × 0.1 at 2/3 of the epochs, label
    smoothing 0.2), the best dev epoch's weights scored on ``test``: ``top1``, ``top5``, ``dev_top1`` (%)."""
    torch.manual_seed(seed)
    model = TwoHandGRU(num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = -(-len(train) // batch_size)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, max(1, round(2 * epochs / 3)) * steps, 0.1)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([s.meta.label for s in train])

    @torch.no_grad()
    def scores(samples: list[Sample]) -> torch.Tensor:
        model.eval()
        return torch.cat([model(torch.from_numpy(np.stack([plain_features(s, False) for s in
                                                            samples[k:k + 256]])).to(device)).cpu()
                          for k in range(0, len(samples), 256)])

    def accuracy(samples: list[Sample]) -> dict:
        return islr_accuracy(scores(samples), torch.tensor([s.meta.label for s in samples]))

    best, best_state = -1.0, None
    for _ in tqdm(range(epochs), desc="plain GRU", unit="epoch", leave=False):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(batch_size):
            features = torch.from_numpy(np.stack([plain_features(train[k], True) for k in batch.tolist()]))
            loss = nn.functional.cross_entropy(model(features.to(device)), labels[batch].to(device),
                                               label_smoothing=0.2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        dev_top1 = accuracy(dev)["per_instance_top1"]
        if dev_top1 > best:
            best, best_state = dev_top1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    result = accuracy(test)
    return {"top1": result["per_instance_top1"], "top5": result["per_instance_top5"], "dev_top1": best}


# --- runs ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """What every run of one call shares (picklable, for ``--jobs``)."""

    out: Path
    text_model: str
    text_dim: int
    steps: int
    batch_size: int
    pretrain_seed: int
    pretrain_overrides: tuple[str, ...]
    epochs: int
    encoder_lr_scale: float
    finetune_overrides: tuple[str, ...]
    segments: int
    finetuning: dict  # subset → its fine-tuning set's summary
    pretraining: dict  # subset → its pre-training set's shards and settings

    @property
    def text_model_key(self) -> str:
        """The text model as the caches know it: the stand-in built in ``out`` by its content-named folder, so that the
        runs are found again however ``--out`` is spelt or wherever it moves; another model by its name or path."""
        path = Path(self.text_model)
        return path.name if path.resolve().parent == self.out.resolve() else self.text_model


def pretrain_variant(subset: int, variant: RealVariant, setup: Setup) -> dict:
    """Pre-train one variant for one subset once, with ``setup.pretrain_seed``; every fine-tuning seed starts from
    this encoder, so the seeds' spread is the fine-tuning's (the question is what one pre-training gives), and a
    pre-training costs once per variant. Cached in ``OUT/runs/<subset>/pretrain-<variant>-<digest>``; returns its
    record (``folder``, ``seconds``, final losses)."""
    folder = pretrain_folder(subset, variant, setup)
    record = folder / "pretrain.json"
    folder.mkdir(parents=True, exist_ok=True)
    # Side by side (--jobs), a variant's other seeds wait here for the one run that pre-trains, then read its record.
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a job beside this one, or another call of the benchmark, is pre-training it
            tqdm.write(f"waiting for the pre-training in {folder}: another process is running it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.is_file():
            pretrain_into(folder, subset, variant, setup)
    return {**json.loads(record.read_text()), "folder": str(folder)}


def pretrain_folder(subset: int, variant: RealVariant, setup: Setup) -> Path:
    """Where :func:`pretrain_variant` caches one pre-training: named by a digest of what it depends on."""
    settings = [variant.overrides, setup.pretraining[subset]["settings"], setup.text_model_key, setup.steps,
                setup.batch_size, setup.pretrain_seed, list(setup.pretrain_overrides)]
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return setup.out / "runs" / str(subset) / f"pretrain-{variant.label}-{digest}"


def pretrain_into(folder: Path, subset: int, variant: RealVariant, setup: Setup) -> None:
    """The pre-training itself: ``folder/encoder`` and ``folder/pretrain.json`` (seconds, final losses)."""
    began = time.time()
    cfg = pretrain_config(setup.pretraining[subset], variant, setup, folder)
    losses: list[dict[str, float]] = []
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = pretrain_on_one_device(cfg, setup.steps, device, losses, checkpoint=folder / "checkpoint.pt")
    model.encoder.save_pretrained(folder / "encoder")
    tail = losses[-LOSS_TAIL:]
    write_summary(folder / "pretrain.json", {
        "steps": setup.steps, "seed": setup.pretrain_seed, "seconds": round(time.time() - began, 1),
        **{name: statistics.mean(step[name] for step in tail)
           for name, on in (("loss_pr", cfg.loss.use_pr), ("loss_stc", cfg.loss.use_stc)) if on}})


def pretrain_config(pretraining: dict, variant: RealVariant, setup: Setup, output: Path) -> PretrainRunConfig:
    """``configs/pretrain/tiny.yaml`` on this subset's pre-training set with the variant's overrides."""
    return load_config(PretrainRunConfig, REPO / "configs" / "pretrain" / "tiny.yaml", [
        f"data.shards={json.dumps(pretraining['shards'])}", f"text.name_or_path={setup.text_model}",
        f"model.text_dim={setup.text_dim}", f"seed={setup.pretrain_seed}", f"data.seed={setup.pretrain_seed}",
        f"data.batch_size={setup.batch_size}", f"output={output}", *variant.overrides, *setup.pretrain_overrides])


def run_variant(subset: int, variant: RealVariant, seed: int, setup: Setup) -> dict:
    """Probe and fine-tune one variant with one seed from its pre-trained encoder (:func:`pretrain_variant`) or
    from scratch, or train the plain baseline; cached in ``OUT/runs``."""
    finetuning = setup.finetuning[subset]
    pretrained = pretrain_variant(subset, variant, setup) if variant.pretrain and variant.slp else None
    settings = [variant.overrides, variant.pretrain, variant.slp, finetuning["settings"], setup.epochs,
                setup.encoder_lr_scale, setup.finetune_overrides, setup.segments]
    if pretrained:  # (what a run without pre-training does not depend on does not make it run again)
        settings.append(Path(pretrained["folder"]).name)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    run_dir = setup.out / "runs" / str(subset) / f"{variant.label}-{digest}" / f"seed{seed}"
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    began = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shards = [finetuning["shards"]]
    train, dev, test = (load_split(shards, DATASET, split, islr.keep) for split in ("train", "dev", "test"))
    result = {"subset": subset, "variant": variant.label, "seed": seed, "overrides": list(variant.overrides)}
    if not variant.slp:
        result.update(train_plain(train, dev, test, subset, setup.epochs, seed, device))
        result["seconds"] = result["finetune_seconds"] = round(time.time() - began, 1)
        write_summary(run_dir / "result.json", result)
        return result
    encoder_dir = Path(pretrained["folder"]) / "encoder" if pretrained else None
    if pretrained:
        encoder = SignPoseEncoder.from_pretrained(encoder_dir).to(device)
        result.update({k: v for k, v in pretrained.items() if k in LOSSES}, pretrain_seconds=pretrained["seconds"],
                      pretrain_seed=pretrained["seed"])
    else:
        torch.manual_seed(seed)
        cfg = pretrain_config(setup.pretraining[subset], variant, setup, run_dir / "pretrain")
        encoder = PretrainingModel(cfg.model, cfg.loss).encoder.to(device)
    probe_began = time.time()
    result["probe"] = 100 * linear_probe(encoder, train, test, subset, segments=setup.segments, seed=seed)
    result["probe_seconds"] = round(time.time() - probe_began, 1)
    encoder_config = encoder.config
    del encoder
    finetune_began = time.time()
    ft = load_config(FinetuneConfig, FINETUNE_CONFIG, [
        f"data.shards={json.dumps(shards)}", f"data.dataset={DATASET}", f"output={run_dir / 'finetune'}",
        f"seed={seed}", f"optim.epochs={setup.epochs}", f"optim.step_size={max(1, round(2 * setup.epochs / 3))}",
        f"islr.num_classes={subset}", f"optim.encoder_lr_scale={setup.encoder_lr_scale}", *setup.finetune_overrides,
        # From scratch the encoder has learnt nothing to keep: it learns as the head does, from the first step.
        *([] if pretrained else FROM_SCRATCH)])
    if not pretrained:
        ft.encoder = encoder_config
    metrics = run_task(ft, pretrained=str(encoder_dir) if encoder_dir else None)
    result.update(top1=metrics["test"]["per_instance_top1"], top5=metrics["test"]["per_instance_top5"],
                  dev_top1=metrics["dev"]["per_instance_top1"], finetune_seconds=round(time.time() - finetune_began, 1),
                  seconds=round(time.time() - began, 1))
    write_summary(run_dir / "result.json", result)
    return result


# --- report --------------------------------------------------------------------------------------------------------

def _cell(values: tuple[float, float, int], digits: int) -> str:
    mean, std, n = values
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({n})" if n else "–"


def describe_splits(data: dict) -> str:
    """A fine-tuning set's clips, signers and glosses per split, and its dropped glosses."""
    counts = data["splits"]
    return "; ".join([*(f"{name} {counts[name]['clips']} clips / {counts[name]['signers']} signers / "
                        f"{counts[name]['glosses']} glosses" for name in ("train", "dev", "test")),
                      f"{len(data['dropped_glosses'])} glosses dropped"])


def render(subset: int, variants: list[RealVariant], results: dict[str, list[dict]], data: dict, budget: str) -> str:
    header = ["variant", "pre-training", *METRICS.values(), *LOSSES.values()]
    lines = [f"WLASL{subset}, real signers (MediaPipe hands), signer-independent: {describe_splits(data)}. "
             f"{budget}. Mean ± std (n seeds).",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in variants:
        cells = [_cell(summarise(results[v.label], m), 1) for m in METRICS]
        cells += [_cell(summarise(results[v.label], m), 3) for m in LOSSES]
        lines.append("| " + " | ".join([v.label, v.title, *cells]) + " |")
    return "\n".join(lines)


def report_name(subsets: Sequence[int], args: argparse.Namespace) -> str:
    """A report file's stem: the subsets, the budget, λ_STC and a digest of any overrides are in it, so reports of
    other subsets, budgets, weights or overrides stand side by side."""
    stem = (f"real_islr-wlasl{'+'.join(map(str, subsets))}-{args.steps}steps-{args.epochs}epochs"
            f"-lambda{args.lambda_stc:g}")
    overrides = [*args.pretrain_overrides, *args.finetune_overrides]
    return f"{stem}-{hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:8]}" if overrides else stem


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realdata", type=Path, default=REALDATA, help="the real-data folder (holds wlasl_hands/)")
    parser.add_argument("--subsets", nargs="+", type=int, default=[100, 300], choices=[100, 300])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=2500, help="pre-training steps per variant")
    parser.add_argument("--batch-size", type=int, default=32, help="pre-training batch")
    parser.add_argument("--pretrain-seed", type=int, default=0, help="the one pre-training's seed per variant")
    parser.add_argument("--lambda-stc", type=float, default=0.1,
                        help="STC's weight in pre-training (the paper's is 1; at this size 0.1 pays off more: README)")
    parser.add_argument("--pretrain-overrides", nargs="*", default=[],
                        help="key=value of every pre-training, after the variant's own (e.g. loss.mask_ratio=0.5)")
    finetuning_defaults = load_config(FinetuneConfig, FINETUNE_CONFIG).optim
    parser.add_argument("--epochs", type=int, default=finetuning_defaults.epochs,
                        help="fine-tuning epochs (StepLR at 2/3 of them)")
    parser.add_argument("--encoder-lr-scale", type=float, default=finetuning_defaults.encoder_lr_scale,
                        help="a pre-trained encoder's lr / the head's")
    parser.add_argument("--finetune-overrides", nargs="*", default=[], help="key=value of the ISLR fine-tuning")
    parser.add_argument("--segments", type=int, default=4, help="time segments the probe's features keep")
    parser.add_argument("--text-model", default="", help="mBART name or folder (default: a word-level tiny stand-in)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, each on its share of the cores (CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs/real_islr"))
    args = parser.parse_args(argv)
    args.subsets = sorted(set(args.subsets))
    from transformers import AutoConfig

    began = time.time()
    source = Source(args.realdata / SOURCE)
    args.out.mkdir(parents=True, exist_ok=True)
    finetuning = {n: prepare_finetuning(source, n, args.out) for n in args.subsets}
    for n, data in finetuning.items():
        print(f"WLASL{n}: {describe_splits(data)} {data['dropped_glosses']}")
    pretraining = {n: prepare_pretraining(source, n, args.out) for n in args.subsets}
    text_model = args.text_model or prepare_text_model(source, args.out)
    setup = Setup(args.out, text_model, AutoConfig.from_pretrained(text_model).d_model, args.steps, args.batch_size,
                  args.pretrain_seed, (f"loss.lambda_stc={args.lambda_stc:g}", *args.pretrain_overrides), args.epochs,
                  args.encoder_lr_scale, tuple(args.finetune_overrides), args.segments, finetuning, pretraining)
    text_side = text_token_agreement(text_model, source.texts())
    print(f"text features ({text_side['example']!r}, {text_side['tokens']} tokens): mean cosine between different "
          f"glosses' texts by token position {text_side['mean_cosine_by_position']}")
    variants = [VARIANTS[label] for label in VARIANTS if label in args.variants]
    runs = [(n, v, seed, setup) for n in args.subsets for v in variants for seed in args.seeds]
    # The runs that pre-train go first, the other seeds of their variants last: side by side, no job waits for a
    # pre-training while another run could go.
    runs.sort(key=lambda run: 0 if run[1].pretrain and run[1].slp and run[2] == args.seeds[0] else
              2 if run[1].pretrain and run[1].slp else 1)
    results: dict[int, dict[str, list[dict]]] = {n: {v.label: [] for v in variants} for n in args.subsets}
    for result in run_grid(run_variant, runs, args.jobs, "real ISLR runs"):
        results[result["subset"]][result["variant"]].append(result)
    tables = {}
    budget = ", ".join([f"{args.steps} pre-training steps of batch {args.batch_size}",
                        f"λ_STC {args.lambda_stc:g}", f"{args.epochs} fine-tuning epochs",
                        f"encoder lr × {args.encoder_lr_scale:g}",
                        *args.pretrain_overrides, *args.finetune_overrides])
    for n in args.subsets:
        tables[n] = render(n, variants, results[n], finetuning[n], budget)
        print("\n" + tables[n])
        shown = Table("XIII/XIV", f"WLASL{n}, real signers (hand landmarks), {args.steps} steps, {args.epochs} epochs",
                      ("",), tuple(((v.label,), v) for v in variants))
        plot_table(shown, results[n], METRICS, args.out / f"{report_name([n], args)}.png")
    summary = {"seeds": args.seeds, "steps": args.steps, "batch_size": args.batch_size,
               "pretrain_seed": args.pretrain_seed, "lambda_stc": args.lambda_stc,
               "pretrain_overrides": args.pretrain_overrides,
               "epochs": args.epochs,
               "encoder_lr_scale": args.encoder_lr_scale, "finetune_overrides": args.finetune_overrides,
               "probe_segments": args.segments, "text_model": text_model, "text_side": text_side,
               "frame_size": [FRAME_WIDTH, FRAME_HEIGHT], "fps": FPS, "seconds": round(time.time() - began, 1),
               "data": {str(n): {k: d[k] for k in ("samples", "splits", "signers", "dropped_glosses")}
                        for n, d in finetuning.items()},
               "pretraining_samples": {str(n): p["samples"] for n, p in pretraining.items()},
               "tables": {str(n): t for n, t in tables.items()},
               "results": {str(n): rs for n, rs in results.items()}}
    write_summary(args.out / f"{report_name(args.subsets, args)}.json", summary)
    return summary


if __name__ == "__main__":
    main()
