"""Word error rate as sclite computes it, with the official gloss clean-up of the Phoenix evaluations.

The alignment is sclite's (SCTK ``net_dp.c`` with ``word.c``'s ``wwd_WORD`` weights): a weighted edit distance
with substitution 4, deletion 3, insertion 3, a correct word 0. Each cell keeps one back-pointer, chosen as
sclite does: the diagonal (correct or substitution) when no dearer than both deletion and insertion, else the
deletion when strictly cheaper than the insertion, else the insertion; the counts come from following these
pointers back from the last cell. Plain Levenshtein (unit costs) gives the same total on almost every pair but
often another split, and sclite's weights can even choose an alignment with more errors (5 substitutions weigh
20; 3 deletions + 3 insertions, 18). Words are compared case-sensitively, as ``sclite -s`` does (sclite folds case by
default; no two Phoenix glosses differ only in case); sclite's special words (``@``, ``(optional)`` ones) are not
given special meaning. Rates are percentages of the number of reference words.

``cleanup`` applies an evaluation's gloss clean-up to hypotheses and references alike:

- ``"phoenix2014"``: the sentence-level rules of the Phoenix-2014 evaluation's ``preprocess.sh`` (as shipped in
  the RWTH release's ``evaluation/`` folder and copied by the VAC / CorrNet ``slr_eval``): prefixes ``loc-``,
  ``cl-``, ``qu-``, ``poss-``, ``lh-`` removed, ``S0NNE`` → ``SONNE``, ``HABEN2`` → ``HABEN``, ``__EMOTION__``,
  ``__PU__``, ``__LEFTHAND__`` and ``__EPENTHESIS__`` dropped, ``WIE AUSSEHEN`` → ``WIE-AUSSEHEN``, ``ZEIGEN`` →
  ``ZEIGEN-BILDSCHIRM``, spelled single letters joined with ``+``, ``…RAUM`` suffixes and ``-PLUSPLUS``
  stripped, immediate repetitions of a gloss collapsed (``__ON__`` / ``__OFF__`` stay: the ground-truth STM
  keeps them);
- ``"phoenix2014t"``: the per-gloss rules of Phoenix-2014-T's ``preprocess_14t.sh``: every ``__X__`` marker
  dropped, ``loc-`` / ``cl-`` prefixes, ``-PLUSPLUS`` and a trailing ``RAUM`` stripped;
- ``"csl-daily"``: none (CSL-Daily's evaluation scores the glosses as they are).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_PHOENIX_SUBS = [
    (re.compile(r"loc-"), ""), (re.compile(r"cl-"), ""), (re.compile(r"qu-"), ""), (re.compile(r"poss-"), ""),
    (re.compile(r"lh-"), ""), (re.compile(r"S0NNE"), "SONNE"), (re.compile(r"HABEN2"), "HABEN"),
    (re.compile(r"__EMOTION__"), ""), (re.compile(r"__PU__"), ""), (re.compile(r"__LEFTHAND__"), ""),
    (re.compile(r"WIE AUSSEHEN"), "WIE-AUSSEHEN"), (re.compile(r"ZEIGEN "), "ZEIGEN-BILDSCHIRM "),
    (re.compile(r"ZEIGEN$"), "ZEIGEN-BILDSCHIRM"),
    (re.compile(r"^([A-Z]) ([A-Z][+ ])"), r"\1+\2"), (re.compile(r"[ +]([A-Z]) ([A-Z]) "), r" \1+\2 "),
    (re.compile(r"([ +][A-Z]) ([A-Z][ +])"), r"\1+\2"), (re.compile(r"([ +][A-Z]) ([A-Z][ +])"), r"\1+\2"),
    (re.compile(r"([ +][A-Z]) ([A-Z][ +])"), r"\1+\2"), (re.compile(r"([ +]SCH) ([A-Z][ +])"), r"\1+\2"),
    (re.compile(r"([ +]NN) ([A-Z][ +])"), r"\1+\2"), (re.compile(r"([ +][A-Z]) (NN[ +])"), r"\1+\2"),
    (re.compile(r"([ +][A-Z]) ([A-Z])$"), r"\1+\2"), (re.compile(r"([A-Z][A-Z])RAUM"), r"\1"),
    (re.compile(r"-PLUSPLUS"), ""),
]
_REPEAT = re.compile(r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])")
_DROPPED = {"__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__"}


def clean_phoenix(glosses: Sequence[str]) -> list[str]:
    """The RWTH Phoenix evaluation's gloss clean-up on one sentence."""
    text = " ".join(glosses)
    for pattern, repl in _PHOENIX_SUBS:
        text = pattern.sub(repl, text)
    for _ in range(4):  # the official script applies the repetition rule four times
        text = _REPEAT.sub(r"\1", text)
    return [g for g in text.split() if g not in _DROPPED]


_MARKER = re.compile(r"^__[^_ ]*__$")
_PHOENIX_T_SUBS = [(re.compile(r"^loc-"), ""), (re.compile(r"-PLUSPLUS$"), ""), (re.compile(r"^cl-"), ""),
                   (re.compile(r"\b([A-Z][A-Z]*)RAUM$"), r"\1")]


def clean_phoenix2014t(glosses: Sequence[str]) -> list[str]:
    """The Phoenix-2014-T evaluation's clean-up, gloss by gloss."""
    out = []
    for gloss in glosses:
        if gloss in _DROPPED or _MARKER.match(gloss):
            continue
        for pattern, repl in _PHOENIX_T_SUBS:
            gloss = pattern.sub(repl, gloss)
        out.append(gloss)
    return out


CLEANUPS = {"phoenix2014": clean_phoenix, "phoenix2014t": clean_phoenix2014t, "csl-daily": list}


_SUB, _DEL, _INS = 4, 3, 3  # sclite's word weights; a correct word costs 0
_DIAGONAL, _DELETION, _INSERTION = 0, 1, 2


def align_counts(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[int, int, int, int]:
    """(correct, substitutions, deletions, insertions) of sclite's alignment of two word sequences."""
    n, m = len(reference), len(hypothesis)
    # Python integers and lists: no overflow (the uint8 matrices of some ports wrap past 85 words at these
    # weights), and element access is cheaper than on numpy arrays.
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[_INSERTION] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        cost[0][j] = j * _INS
    for i in range(1, n + 1):
        cost[i][0], back[i][0] = i * _DEL, _DELETION
        word, above, row, pointers = reference[i - 1], cost[i - 1], cost[i], back[i]
        for j in range(1, m + 1):
            diagonal = above[j - 1] + (0 if word == hypothesis[j - 1] else _SUB)
            deletion = above[j] + _DEL
            insertion = row[j - 1] + _INS
            if diagonal <= deletion and diagonal <= insertion:
                row[j], pointers[j] = diagonal, _DIAGONAL
            elif deletion < insertion:
                row[j], pointers[j] = deletion, _DELETION
            else:
                row[j], pointers[j] = insertion, _INSERTION
    correct = sub = dele = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        step = back[i][j]
        if step == _DIAGONAL:
            if reference[i - 1] == hypothesis[j - 1]:
                correct += 1
            else:
                sub += 1
            i, j = i - 1, j - 1
        elif step == _DELETION:
            dele += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return correct, sub, dele, ins


def _tokens(x: str | Sequence[str]) -> list[str]:
    return x.split() if isinstance(x, str) else list(x)


def wer(references, hypotheses, *, cleanup: str | None = None) -> dict[str, float]:
    """Corpus WER with substitution, deletion and insertion rates (percent of reference words)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if cleanup and cleanup not in CLEANUPS:
        raise ValueError(f"unknown WER clean-up {cleanup!r}; known: {sorted(CLEANUPS)}")
    clean = CLEANUPS[cleanup] if cleanup else list
    totals = np.zeros(4, dtype=np.int64)
    words = 0
    for ref, hyp in zip(references, hypotheses):
        ref, hyp = clean(_tokens(ref)), clean(_tokens(hyp))
        words += len(ref)
        totals += align_counts(ref, hyp)
    correct, sub, dele, ins = (int(x) for x in totals)
    denom = max(words, 1)
    return {"wer": 100.0 * (sub + dele + ins) / denom, "sub": 100.0 * sub / denom, "del": 100.0 * dele / denom,
            "ins": 100.0 * ins / denom, "num_ref_words": words, "num_correct": correct, "num_sub": sub,
            "num_del": dele, "num_ins": ins, "num_sentences": len(references)}


def read_stm(path) -> dict[str, list[str]]:
    """An sclite STM file (``id channel speaker start end glosses…``) → id → glosses."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts:
                out[parts[0]] = parts[5:]
    return out
