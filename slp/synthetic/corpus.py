"""The synthetic signer corpus: isolated signs and sentences, split by signer, written as SL-1.5M shards.

Every sample is regenerated from ``(seed, kind, signer, index)`` alone, so any subset of the corpus is the
same whichever other samples are generated. Isolated signs are paired with the English template
"This word is <word>."; sentences are gloss sequences with a text in English, German or Chinese built from a
small trilingual lexicon. Sign language follows the text language (en → ASL, de → GSL, zh → CSL).

The defaults are the *easy* corpus of the demo. ``configs/synthetic/hard.yaml`` turns on what the paper's claims
rest on (:class:`SyntheticConfig`'s second group of fields): glosses told apart only by the mouth and cheeks
(NMFs-CSL's confusing pairs), questions marked only by the face and head, manually near-identical glosses (NLA-SLR's),
anatomical arms, co-articulated sentences, three camera frame shapes with scale and roll, and detectors that lose
fast hands and doubt curled fingers. Each switch draws from its own generators, so the easy corpus is the same
numbers whatever the new fields' code does when they are off.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slp.data.schema import Sample, SampleMeta, make_key
from slp.data.shards import ShardWriter, manifest_row, write_manifest, write_summary
from slp.pose.readers import PoseSequence, to_shard_pose
from slp.synthetic.signer import (
    GlossRecipe,
    add_question_marking,
    blend_controls,
    gloss_controls,
    make_gloss,
    make_signer,
    near_copy,
    puffed_cheeks,
    render_signer,
    rest_controls,
    vary_signer,
)

DATASET = "synthetic"
SIGN_LANGUAGE_OF_TEXT = {"en": "ASL", "de": "GSL", "zh": "CSL"}

# (English, German, Chinese) forms of the words glosses stand for.
LEXICON: tuple[tuple[str, str, str], ...] = (
    ("apple", "Apfel", "苹果"), ("book", "Buch", "书"), ("house", "Haus", "房子"), ("water", "Wasser", "水"),
    ("friend", "Freund", "朋友"), ("school", "Schule", "学校"), ("rain", "Regen", "雨"), ("sun", "Sonne", "太阳"),
    ("cold", "kalt", "冷"), ("warm", "warm", "暖和"), ("today", "heute", "今天"), ("tomorrow", "morgen", "明天"),
    ("eat", "essen", "吃"), ("drink", "trinken", "喝"), ("go", "gehen", "去"), ("come", "kommen", "来"),
    ("mother", "Mutter", "妈妈"), ("father", "Vater", "爸爸"), ("teacher", "Lehrer", "老师"),
    ("work", "Arbeit", "工作"),
    ("city", "Stadt", "城市"), ("car", "Auto", "汽车"), ("train", "Zug", "火车"), ("morning", "Morgen", "早上"),
    ("evening", "Abend", "晚上"), ("wind", "Wind", "风"), ("snow", "Schnee", "雪"), ("cloud", "Wolke", "云"),
    ("north", "Norden", "北方"), ("south", "Süden", "南方"), ("good", "gut", "好"), ("bad", "schlecht", "坏"),
    ("big", "groß", "大"), ("small", "klein", "小"), ("read", "lesen", "读"), ("write", "schreiben", "写"),
    ("sleep", "schlafen", "睡觉"), ("play", "spielen", "玩"), ("help", "helfen", "帮助"), ("learn", "lernen", "学习"),
    ("doctor", "Arzt", "医生"), ("money", "Geld", "钱"), ("time", "Zeit", "时间"), ("day", "Tag", "天"),
    ("night", "Nacht", "夜"), ("week", "Woche", "星期"), ("year", "Jahr", "年"), ("family", "Familie", "家庭"),
    ("child", "Kind", "孩子"), ("food", "Essen", "食物"), ("tea", "Tee", "茶"), ("milk", "Milch", "牛奶"),
    ("dog", "Hund", "狗"), ("cat", "Katze", "猫"), ("bird", "Vogel", "鸟"), ("tree", "Baum", "树"),
    ("flower", "Blume", "花"), ("river", "Fluss", "河"), ("mountain", "Berg", "山"), ("sea", "Meer", "海"),
)
_LANGUAGE_COLUMN = {"en": 0, "de": 1, "zh": 2}
# Related meanings for NLA-SLR's visually similar pairs (the English words of LEXICON).
RELATED_WORDS: tuple[tuple[str, str], ...] = (
    ("cold", "warm"), ("today", "tomorrow"), ("eat", "drink"), ("go", "come"), ("mother", "father"),
    ("morning", "evening"), ("north", "south"), ("rain", "snow"), ("car", "train"), ("big", "small"),
    ("good", "bad"), ("read", "write"), ("day", "night"), ("dog", "cat"), ("river", "sea"), ("tea", "milk"),
)


@dataclass
class SyntheticConfig:
    """Sizes and noise of a synthetic corpus; the defaults suit CPU tests (a few hundred samples)."""

    num_glosses: int = 20
    num_signers: int = 10
    dev_signers: int = 1  # the last dev_signers + test_signers signers are held out
    test_signers: int = 2
    repetitions: int = 2  # isolated samples per gloss per signer
    sentences_per_signer: int = 8
    sentence_length: tuple[int, int] = (2, 4)  # glosses per sentence, inclusive
    languages: tuple[str, ...] = ("en", "de", "zh")
    transition_frames: int = 6
    rest_frames: int = 4
    fps: float = 25.0
    width: int = 1280
    height: int = 720
    noise: float = 0.01  # coordinate noise, shoulder widths
    point_dropout: float = 0.02
    hand_dropout: float = 0.03
    seed: int = 0
    shard_samples: int = 500
    # What makes a corpus hard (all off: the easy corpus).
    non_manual_pairs: int = 0  # gloss pairs signed alike with the hands, told apart by mouthing and cheeks only
    similar_pairs: int = 0  # manually near-identical gloss pairs (NLA-SLR); half of them with related meanings
    mouth_gestures: int = 0  # > 0: glosses share this many mouthings, so the mouth alone rarely names a gloss
    question_rate: float = 0.0  # sentences that are yes/no questions: brows up, head forward, "?" in the text
    coarticulation: float = 0.0  # fraction of a sign's start / end its neighbours take over in a sentence
    cameras: list[tuple[int, int]] = field(default_factory=list)  # frame sizes drawn per signer (empty: width × height)
    scale_range: float = 0.0  # signer size varies by ± this fraction
    max_roll: float = 0.0  # camera roll, degrees
    anatomical_arms: bool = False  # shoulder → elbow → wrist of fixed lengths, the hand's wrist on the arm's
    motion_dropout: float = 0.0  # extra chance of losing a hand at fast wrist motion
    finger_occlusion: float = 0.0  # confidence a fully curled finger loses

    def __post_init__(self):
        if self.num_glosses > len(LEXICON):
            raise ValueError(f"num_glosses={self.num_glosses} exceeds the lexicon's {len(LEXICON)} words")
        if self.dev_signers + self.test_signers >= self.num_signers:
            raise ValueError("at least one training signer is needed")


def gloss_name(index: int) -> str:
    return LEXICON[index][0].upper()


def word(index: int, language: str) -> str:
    return LEXICON[index][_LANGUAGE_COLUMN[language]]


def isolated_text(index: int) -> str:
    return f"This word is {word(index, 'en')}."


def sentence_text(glosses: list[int], language: str, question: bool = False) -> str:
    words = [word(g, language) for g in glosses]
    if language == "zh":
        return "".join(words) + ("吗？" if question else "。")
    text = " ".join(words)
    return text[0].upper() + text[1:] + ("?" if question else ".")


def signer_split(cfg: SyntheticConfig, signer: int) -> str:
    held = cfg.num_signers - signer
    if held <= cfg.test_signers:
        return "test"
    if held <= cfg.test_signers + cfg.dev_signers:
        return "dev"
    return "train"


def _rng(cfg: SyntheticConfig, *parts: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, *parts])


@dataclass
class GlossRelations:
    """Which glosses were made alike: ``similar`` (a, b, related meanings) pairs are manually near-identical,
    ``non_manual`` (a, b) pairs are signed identically with the hands."""

    similar: list[tuple[int, int, bool]]
    non_manual: list[tuple[int, int]]


def gloss_relations(cfg: SyntheticConfig) -> GlossRelations:
    """The related-meaning pairs of :data:`RELATED_WORDS` come first (up to half of ``similar_pairs``), then random
    pairs of the remaining glosses; as many pairs as the glosses allow."""
    index = {entry[0]: i for i, entry in enumerate(LEXICON)}
    related = [(index[a], index[b]) for a, b in RELATED_WORDS if max(index[a], index[b]) < cfg.num_glosses]
    similar = [(a, b, True) for a, b in related[:(cfg.similar_pairs + 1) // 2]]
    taken = {g for a, b, _ in similar for g in (a, b)}
    free = [int(g) for g in _rng(cfg, 9).permutation([g for g in range(cfg.num_glosses) if g not in taken])]
    while len(similar) < cfg.similar_pairs and len(free) >= 2:
        similar.append((free.pop(), free.pop(), False))
    non_manual = []
    while len(non_manual) < cfg.non_manual_pairs and len(free) >= 2:
        non_manual.append((free.pop(), free.pop()))
    return GlossRelations(similar, non_manual)


def _glosses(cfg: SyntheticConfig) -> list[GlossRecipe]:
    glosses = [make_gloss(_rng(cfg, 1, g)) for g in range(cfg.num_glosses)]
    rng = _rng(cfg, 7)
    gesture = [int(k) for k in rng.integers(0, max(cfg.mouth_gestures, 1), cfg.num_glosses)]
    if cfg.mouth_gestures:
        # Shared mouthings: lip shapes spread from spread to rounded, opening patterns of their own.
        pool = [(_rng(cfg, 8, k).uniform(0, 1, 3), float(np.linspace(-1, 1, cfg.mouth_gestures)[k])
                 if cfg.mouth_gestures > 1 else 0.0) for k in range(cfg.mouth_gestures)]
        glosses = [replace(g, mouthing=pool[k][0], lip_shape=pool[k][1]) for g, k in zip(glosses, gesture)]
    relations = gloss_relations(cfg)
    for a, b, _ in relations.similar:
        glosses[b] = replace(near_copy(glosses[a], _rng(cfg, 10, b)), mouthing=glosses[b].mouthing,
                             lip_shape=glosses[b].lip_shape)
    for a, b in relations.non_manual:
        # b: a's hands, another mouthing (another shared gesture where there are several) and puffed cheeks.
        other = glosses[b]
        if cfg.mouth_gestures > 1 and gesture[b] == gesture[a]:
            k = (gesture[a] + 1) % cfg.mouth_gestures
            other = replace(other, mouthing=pool[k][0], lip_shape=pool[k][1])
        glosses[b] = replace(glosses[a], mouthing=other.mouthing, lip_shape=other.lip_shape,
                             cheek_puff=puffed_cheeks(_rng(cfg, 11, b)))
    return glosses


def _signers(cfg: SyntheticConfig):
    signers = [make_signer(_rng(cfg, 2, s), cfg.noise, cfg.point_dropout, cfg.hand_dropout, cfg.width, cfg.height)
               for s in range(cfg.num_signers)]
    if not (cfg.cameras or cfg.scale_range or cfg.max_roll or cfg.anatomical_arms or cfg.motion_dropout
            or cfg.finger_occlusion):
        return signers
    return [vary_signer(signer, _rng(cfg, 6, s), tuple(cfg.cameras), cfg.scale_range, cfg.max_roll,
                        cfg.anatomical_arms, cfg.motion_dropout, cfg.finger_occlusion)
            for s, signer in enumerate(signers)]


def _sign_controls(gloss, signer, rng: np.random.Generator) -> dict[str, np.ndarray]:
    frames = max(8, int(round(gloss.base_frames / signer.speed * rng.uniform(0.9, 1.1))))
    controls = gloss_controls(gloss, np.linspace(0, 1, frames))
    controls["wrists"] = controls["wrists"] + rng.normal(0, 0.04, (1, 2, 2))  # repetition-to-repetition jitter
    return controls


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _sample(cfg, key, controls, signer, signer_id, rng, **meta) -> Sample:
    keypoints = render_signer(controls, signer, rng)
    seq = PoseSequence(keypoints, cfg.fps, signer.width, signer.height, key)
    return Sample(
        key=key,
        pose=to_shard_pose(seq),
        meta=SampleMeta(
            dataset=DATASET,
            split=signer_split(cfg, signer_id),
            signer=f"signer{signer_id:03d}",
            fps=cfg.fps,
            width=signer.width,
            height=signer.height,
            frame_start=0,
            frame_end=keypoints.shape[0],
            paired=True,
            **meta,
        ),
    )


def generate_isolated(cfg: SyntheticConfig) -> Iterator[Sample]:
    """Isolated signs: every gloss × signer × repetition, with label = gloss index."""
    glosses, signers = _glosses(cfg), _signers(cfg)
    for s, signer in enumerate(signers):
        for g, gloss in enumerate(glosses):
            for r in range(cfg.repetitions):
                rng = _rng(cfg, 3, s, g, r)
                controls = _sign_controls(gloss, signer, rng)
                key = make_key(DATASET, "isolated", f"s{s:03d}", f"g{g:03d}", f"r{r:02d}")
                yield _sample(cfg, key, controls, signer, s, rng, sign_language="ASL", text_language="en",
                              source_id=key, text=isolated_text(g), gloss=gloss_name(g), label=g)


@dataclass
class SentencePlan:
    signer: int
    index: int
    glosses: list[int]
    language: str
    question: bool

    @property
    def text(self) -> str:
        return sentence_text(self.glosses, self.language, self.question)


def sentence_plan(cfg: SyntheticConfig) -> Iterator[SentencePlan]:
    """Signer, index, gloss indices, language and mood of every sentence, without generating poses."""
    for s in range(cfg.num_signers):
        for i in range(cfg.sentences_per_signer):
            rng = _rng(cfg, 4, s, i)
            n = int(rng.integers(cfg.sentence_length[0], cfg.sentence_length[1] + 1))
            glosses = [int(g) for g in rng.integers(0, cfg.num_glosses, n)]
            language = cfg.languages[int(rng.integers(len(cfg.languages)))]
            question = cfg.question_rate > 0 and bool(_rng(cfg, 12, s, i).random() < cfg.question_rate)
            yield SentencePlan(s, i, glosses, language, question)


def _coarticulated(sign: dict[str, np.ndarray], fraction: float, first: bool, last: bool) -> dict[str, np.ndarray]:
    """A sign in a sentence: its neighbours take over ``fraction`` of its start (unless first) and of its end
    (unless last)."""
    cut = int(round(fraction * len(sign["mouth"])))
    start, stop = (0 if first else cut), len(sign["mouth"]) - (0 if last else cut)
    return {k: v[start:stop] for k, v in sign.items()}


def generate_sentences(cfg: SyntheticConfig) -> Iterator[Sample]:
    """Sentences: signs joined by transitions, rest poses at both ends, with a gloss list and a text; questions
    carry raised brows and a forward head over their signs."""
    glosses, signers = _glosses(cfg), _signers(cfg)
    for plan in sentence_plan(cfg):
        s, sequence = plan.signer, plan.glosses
        rng = _rng(cfg, 5, s, plan.index)
        signer = signers[s]
        rest = rest_controls(cfg.rest_frames)
        parts = [rest]
        transition = cfg.transition_frames
        if cfg.coarticulation:  # fluent signing: shorter transitions for faster signers
            transition = max(2, int(round(cfg.transition_frames * (1 - cfg.coarticulation) / signer.speed)))
        for j, g in enumerate(sequence):
            sign = _sign_controls(glosses[g], signer, rng)
            if cfg.coarticulation:
                sign = _coarticulated(sign, cfg.coarticulation, j == 0, j == len(sequence) - 1)
            parts += [blend_controls(parts[-1], sign, transition, cfg.coarticulation), sign]
        parts += [blend_controls(parts[-1], rest, cfg.transition_frames), rest]
        controls = _concat(parts)
        if plan.question:
            controls = add_question_marking(controls, cfg.rest_frames, len(controls["mouth"]) - cfg.rest_frames)
        key = make_key(DATASET, "sentence", f"s{s:03d}", f"n{plan.index:04d}")
        yield _sample(cfg, key, controls, signer, s, rng, sign_language=SIGN_LANGUAGE_OF_TEXT[plan.language],
                      text_language=plan.language, source_id=key, text=plan.text,
                      gloss=[gloss_name(g) for g in sequence])


def corpus_texts(cfg: SyntheticConfig) -> list[str]:
    """Every text of the corpus (for training the tiny stand-in tokenizer), without generating poses."""
    return [isolated_text(g) for g in range(cfg.num_glosses)] + [plan.text for plan in sentence_plan(cfg)]


def write_synthetic_corpus(out_dir: str | Path, cfg: SyntheticConfig) -> dict:
    """Write ``shards/synthetic-isolated-*.tar``, ``shards/synthetic-sentences-*.tar``, manifest and summary."""
    out = Path(out_dir)
    start = time.time()
    rows: list[dict] = []
    counts: Counter = Counter()
    total = cfg.num_signers * (cfg.num_glosses * cfg.repetitions + cfg.sentences_per_signer)
    with tqdm(total=total, desc="synthetic corpus", unit="sample") as bar:
        for kind, samples in (("isolated", generate_isolated(cfg)), ("sentences", generate_sentences(cfg))):
            with ShardWriter(out / "shards", prefix=f"{DATASET}-{kind}", max_samples=cfg.shard_samples) as writer:
                for sample in samples:
                    writer.write(sample)
                    shard = f"{DATASET}-{kind}-{writer.index:06d}.tar"  # the shard this sample lands in
                    rows.append(manifest_row(sample, shard))
                    counts[(kind, sample.meta.split)] += 1
                    bar.update()
    write_manifest(rows, out / "manifest.parquet")
    summary = {
        "dataset": DATASET,
        "samples": len(rows),
        "by_kind_and_split": {f"{k}/{s}": n for (k, s), n in sorted(counts.items())},
        "shards": sorted(p.name for p in (out / "shards").glob("*.tar")),
        "frames": int(sum(r["frames"] for r in rows)),
        "seconds": round(time.time() - start, 3),
        "config": asdict(cfg),
        "gloss_relations": asdict(gloss_relations(cfg)),
    }
    write_summary(out / "summary.json", summary)
    return summary
