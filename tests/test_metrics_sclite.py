"""WER counts against sclite itself, pair by pair: the tool the Phoenix evaluation scripts call.

sclite comes with SCTK (Debian / Ubuntu: ``apt-get install sctk``, which puts it in ``/usr/lib/sctk/bin``;
``.ci/run`` installs it). Without it these tests skip.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slp.metrics import clean_phoenix, read_stm, wer
from slp.metrics.wer import align_counts

SCLITE = shutil.which("sclite") or shutil.which("sclite", path="/usr/lib/sctk/bin")
needs_sclite = pytest.mark.skipif(
    SCLITE is None, reason="sclite not found on PATH or in /usr/lib/sctk/bin (install SCTK: apt-get install sctk)"
)

_SCORES = re.compile(r"^id: \((\S+)\)\nScores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)$", re.MULTILINE)


def sclite_counts(pairs: list[tuple[list[str], list[str]]], workdir: Path) -> list[tuple[int, int, int, int]]:
    """(correct, sub, del, ins) of each (reference, hypothesis) pair as sclite aligns them.

    Transcript (``trn``) files, case-sensitive (``-s``, as slp compares words), per-utterance alignments
    (``pra``) on stdout.
    """
    ids = [f"u_{k:05d}" for k in range(len(pairs))]
    for name, side in (("ref.trn", 0), ("hyp.trn", 1)):
        lines = [f"{' '.join(pair[side])} ({uid})\n" for uid, pair in zip(ids, pairs)]
        (workdir / name).write_text("".join(lines), encoding="utf-8")
    result = subprocess.run(
        [SCLITE, "-r", str(workdir / "ref.trn"), "trn", "-h", str(workdir / "hyp.trn"), "trn", "-i", "spu_id",
         "-s", "-e", "utf-8", "-f", "0", "-o", "pra", "stdout"],
        capture_output=True, text=True, check=True,
    )
    found = {m[1]: tuple(int(x) for x in m.groups()[1:]) for m in _SCORES.finditer(result.stdout)}
    assert set(found) == set(ids), f"sclite scored {len(found)} of {len(ids)} utterances"
    return [found[uid] for uid in ids]


def _edit(words: list[str], vocabulary: list[str], rng: random.Random, rate: float) -> list[str]:
    """Random substitutions, deletions and insertions, each word with probability ``rate``."""
    out = []
    for word in words:
        roll = rng.random()
        if roll < rate:
            out.append(rng.choice(vocabulary))
        elif roll < 2 * rate:
            continue
        else:
            out.append(word)
        if rng.random() < rate:
            out.append(rng.choice(vocabulary))
    return out


def _random_pairs(count: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Pairs rich in ties: vocabularies of 1-4 words (repeats everywhere), empty sides, unrelated hypotheses."""
    rng = random.Random(seed)
    pairs = []
    for k in range(count):
        vocabulary = ["A", "B", "C", "D"][: rng.randint(1, 4)]
        reference = [rng.choice(vocabulary) for _ in range(rng.randint(0, 12))]
        kind = k % 4
        if kind == 0:
            hypothesis = [rng.choice(vocabulary) for _ in range(rng.randint(0, 12))]
        elif kind == 1:
            hypothesis = [] if k % 8 == 1 else list(reference)
        else:
            hypothesis = _edit(reference, vocabulary, rng, rate=0.1 if kind == 2 else 0.3)
        pairs.append((reference, hypothesis))
    return pairs


# Hand-checked: unit-cost alignments split these differently (2 and 5 substitutions); sclite's weights prefer
# deletions + insertions, and on the second pair its total is higher than the Levenshtein distance.
SCLITE_SPLITS = [
    ("A B", "B C", (1, 0, 1, 1)),
    ("A A A C C", "C C B B B", (2, 0, 3, 3)),
    ("A B C D", "A X C D E", (3, 1, 0, 1)),
]


@pytest.mark.parametrize("reference, hypothesis, counts", SCLITE_SPLITS)
def test_wer_split_is_sclites_on_hand_checked_pairs(reference, hypothesis, counts):
    assert align_counts(reference.split(), hypothesis.split()) == counts
    out = wer([reference], [hypothesis])
    assert (out["num_correct"], out["num_sub"], out["num_del"], out["num_ins"]) == counts


@needs_sclite
def test_hand_checked_pairs_are_what_sclite_says(tmp_path):
    pairs = [(r.split(), h.split()) for r, h, _ in SCLITE_SPLITS]
    assert sclite_counts(pairs, tmp_path) == [c for _, _, c in SCLITE_SPLITS]


@needs_sclite
def test_wer_counts_equal_sclites_pair_by_pair(tmp_path):
    pairs = _random_pairs(2000)
    expected = sclite_counts(pairs, tmp_path)
    differing = [(ref, hyp, ours, theirs) for (ref, hyp), theirs in zip(pairs, expected)
                 if (ours := align_counts(ref, hyp)) != theirs]
    assert not differing, f"{len(differing)} of {len(pairs)} pairs differ from sclite, e.g. {differing[:3]}"
    # Every kind of error occurs (a degenerate generator would make the agreement trivial).
    assert sum(c[1] for c in expected) > 0 and sum(c[2] for c in expected) > 0 and sum(c[3] for c in expected) > 0


@needs_sclite
def test_wer_on_edited_phoenix_dev_equals_sclites(realdata, tmp_path):
    stm = read_stm(realdata / "phoenix14" / "phoenix2014-groundtruth-dev.stm")
    ground_truth = [stm[i] for i in sorted(stm)]
    references = [clean_phoenix(glosses) for glosses in ground_truth]
    vocabulary = sorted({g for ref in references for g in ref})
    rng = random.Random(2014)
    hypotheses = [_edit(ref, vocabulary, rng, rate=0.1) for ref in references]
    # sclite gets both sides cleaned, as the evaluation scripts do before calling it.
    cleaned = [clean_phoenix(hyp) for hyp in hypotheses]
    expected = sclite_counts(list(zip(references, cleaned)), tmp_path)
    assert [align_counts(r, h) for r, h in zip(references, cleaned)] == expected
    out = wer(ground_truth, hypotheses, cleanup="phoenix2014")
    correct, sub, dele, ins = (sum(c[k] for c in expected) for k in range(4))
    assert (out["num_correct"], out["num_sub"], out["num_del"], out["num_ins"]) == (correct, sub, dele, ins)
