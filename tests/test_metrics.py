"""Metrics on hand-made cases with known answers."""

from __future__ import annotations

import csv
import itertools
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from slp.metrics import clean_phoenix, islr_accuracy, read_stm, retrieval_metrics, translation_scores, wer
from slp.metrics.ctc import CTCBeamDecoder, collapse, ctc_greedy_decode
from slp.metrics.translation import lcs_length, rouge_l_sentence
from slp.metrics.wer import clean_phoenix2014t


def test_islr_per_instance_and_per_class_skip_absent_classes():
    # 4 classes; class 3 never occurs among the labels (an empty class) and must not count.
    scores = np.array([[0.9, 0.1, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0], [0.8, 0.1, 0.05, 0.05],
                       [0.1, 0.2, 0.7, 0.0], [0.5, 0.2, 0.2, 0.1]])
    labels = np.array([0, 1, 1, 2, 2])
    acc = islr_accuracy(scores, labels, topk=(1, 2))
    assert acc["per_instance_top1"] == pytest.approx(60.0)  # samples 0, 1, 3
    assert acc["per_class_top1"] == pytest.approx(100 * (1 + 0.5 + 0.5) / 3)
    assert acc["per_instance_top2"] == pytest.approx(80.0)  # sample 4 (label 2) ranks 2 only at 3rd
    assert acc["num_classes_scored"] == 3
    assert islr_accuracy(scores, labels, topk=(10,))["per_instance_top10"] == 100.0


def test_wer_counts_and_rates():
    out = wer([["A", "B", "C", "D"]], [["A", "X", "C", "D", "E"]])
    assert (out["num_sub"], out["num_del"], out["num_ins"]) == (1, 0, 1)
    assert out["wer"] == pytest.approx(50.0) and out["ins"] == pytest.approx(25.0)
    out = wer(["A B C", "D"], ["A C", ""])
    assert (out["num_del"], out["num_ref_words"], out["wer"]) == (2, 4, 50.0)


def test_wer_longer_than_255_tokens_does_not_overflow():
    ref = [f"G{i}" for i in range(300)]
    hyp = ref[:150] + ref[200:]  # 50 deletions
    out = wer([ref], [hyp])
    assert out["num_del"] == 50 and out["num_sub"] == 0 and out["wer"] == pytest.approx(100 * 50 / 300)
    out = wer([ref], [[]])
    assert out["num_del"] == 300 and out["wer"] == 100.0


def test_phoenix_cleanup_rules():
    glosses = "__ON__ loc-NORD REGEN REGEN cl-KOMMEN A B C __EMOTION__ WIE AUSSEHEN ZEIGEN SONNE-PLUSPLUS __OFF__"
    assert clean_phoenix(glosses.split()) == [
        "__ON__", "NORD", "REGEN", "KOMMEN", "A+B+C", "WIE-AUSSEHEN", "ZEIGEN-BILDSCHIRM", "SONNE", "__OFF__"
    ]
    # Applied to both sides: a hypothesis that differs only by the cleaned markers scores 0.
    assert wer([["loc-NORD", "REGEN"]], [["NORD", "__PU__", "REGEN", "REGEN"]], cleanup="phoenix2014")["wer"] == 0


def test_phoenix2014t_cleanup_is_per_gloss_and_unknown_cleanups_are_refused():
    glosses = "__ON__ loc-NORD NORDRAUM cl-KOMMEN REGEN-PLUSPLUS __PU__ A B __OFF__".split()
    assert clean_phoenix2014t(glosses) == ["NORD", "NORD", "KOMMEN", "REGEN", "A", "B"]
    assert wer([["我", "们"]], [["我", "们"]], cleanup="csl-daily")["wer"] == 0.0
    with pytest.raises(ValueError, match="known"):
        wer([["A"]], [["A"]], cleanup="phoenix")


def test_phoenix_ground_truth_scores_zero_against_the_corpus(realdata):
    stm = read_stm(realdata / "phoenix14" / "phoenix2014-groundtruth-dev.stm")
    with open(realdata / "phoenix14" / "dev.corpus.csv", encoding="utf-8") as f:
        rows = {r["id"]: r["annotation"].split() for r in csv.DictReader(f, delimiter="|")}
    ids = sorted(stm)
    assert len(ids) == 540 and set(ids) == set(rows)
    assert wer([stm[i] for i in ids], [rows[i] for i in ids], cleanup="phoenix2014")["wer"] == 0.0


def test_chinese_bleu_is_per_character_and_rouge_is_not_zero():
    out = translation_scores(["今天天气很好"], ["今天天气不好"], "zh")
    # 6 characters, 5 unigram matches, no brevity penalty.
    assert out["bleu1"] == pytest.approx(100 * 5 / 6)
    assert out["bleu2"] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))  # bigrams: 3 of 5 match
    assert out["rouge_l"] == pytest.approx(100 * 5 / 6)
    assert "tok:zh" in out["bleu_signature"]
    en = translation_scores(["the cat sat on the mat"], ["the cat sat on the mat"], "en")
    assert en["bleu4"] == pytest.approx(100.0) and en["rouge_l"] == pytest.approx(100.0)
    assert "tok:13a" in en["bleu_signature"]


def test_rouge_l_is_cocos_f_measure_on_words_with_umlauts():
    hyp = "morgen wird es im süden heiß"
    ref = "im süden wird es morgen heiß und schwül"
    # LCS 3 ("wird es heiß" or "im süden heiß"): P = 3/6, R = 3/8; F = 2.44 P R / (R + 1.44 P) = 61/146.
    # rouge-score's default tokenizer splits "süden" into "s den" and drops "ß": it would score 8/17.
    assert lcs_length(hyp.split(), ref.split()) == 3
    assert rouge_l_sentence(hyp.split(), ref.split()) == pytest.approx(61 / 146)
    assert rouge_l_sentence(hyp.split(), ref.split(), beta=1.0) == pytest.approx(3 / 7)  # β = 1 differs
    out = translation_scores([hyp, "es wird kühl", ""], [ref, "es wird kühl", "regen"], "de")
    assert out["rouge_l"] == pytest.approx(100 * (61 / 146 + 1 + 0) / 3)  # per-sentence mean; empty scores 0
    # Umlauts are letters of their word: "kühl" and "kuhl" do not match.
    assert translation_scores(["es wird kuhl"], ["es wird kühl"], "de")["rouge_l"] == pytest.approx(100 * 2 / 3)


def test_bleu_hand_checked_with_the_project_settings():
    out = translation_scores(["the cat sat on the mat"], ["the cat is on the mat"], "en")
    # 1- to 4-gram matches 5/6, 3/5, 1/4, 0/3; sacrebleu's default "exp" smoothing turns the 0/3 into 1/(2·3);
    # equal lengths, no brevity penalty.
    assert out["bleu1"] == pytest.approx(100 * 5 / 6)
    assert out["bleu4"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25)
    assert "tok:13a" in out["bleu_signature"] and "smooth:exp" in out["bleu_signature"]


def _raw_corpus_bleu4(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 on whitespace tokens, written out: clipped n-gram matches summed over the corpus."""
    matches, totals = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            h_ngrams = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            r_ngrams = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum((h_ngrams & r_ngrams).values())
            totals[n - 1] += sum(h_ngrams.values())
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * brevity * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / 4)


def test_bleu_matches_raw_corpus_bleu_on_phoenix2014t_test(realdata):
    with open(realdata / "phoenix14t" / "PHOENIX-2014-T.test.corpus.csv", encoding="utf-8", newline="") as f:
        references = [row["translation"].strip() for row in csv.DictReader(f, delimiter="|")]
    assert len(references) == 642
    vocabulary = sorted({w for ref in references for w in ref.split()})
    rng = random.Random(0)
    hypotheses = []
    for ref in references:  # a system's output: some words dropped, some replaced
        words = [w if rng.random() > 0.2 else rng.choice(vocabulary) for w in ref.split() if rng.random() > 0.1]
        hypotheses.append(" ".join(words))
    assert translation_scores(hypotheses, references, "de")["bleu4"] == pytest.approx(
        _raw_corpus_bleu4(hypotheses, references), rel=1e-9
    )


def test_retrieval_recall_median_rank_and_ties():
    sim = np.eye(12) + 0.01 * np.arange(12)[None, :]  # text j's ground truth always wins
    out = retrieval_metrics(sim)
    assert out["t2v_r1"] == 100.0 and out["v2t_r1"] == 100.0 and out["t2v_medr"] == 1.0
    tie = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = retrieval_metrics(tie)
    # Video 0 ties with text 1: its ground truth counts as rank 2 (pessimistic); text 1 ties too.
    assert out["v2t_r1"] == pytest.approx(100 * 2 / 3) and out["t2v_r1"] == pytest.approx(100 * 2 / 3)
    assert out["v2t_medr"] == 1.0
    reversed_ = retrieval_metrics(-np.eye(10) + 0.001 * np.arange(10)[None, :])
    assert reversed_["v2t_r1"] == 0.0 and reversed_["v2t_medr"] >= 5


def _label_probability(probs: torch.Tensor, labels: list[int], blank: int = 0) -> float:
    t, v = probs.shape
    return sum(
        math.prod(probs[i, k].item() for i, k in enumerate(path))
        for path in itertools.product(range(v), repeat=t) if collapse(list(path), blank) == labels
    )


def test_ctc_beam_search_finds_the_most_probable_labelling():
    probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]])  # greedy says [], but P([1]) = 0.64 > P([]) = 0.36
    log_probs = probs.log()[None]
    assert ctc_greedy_decode(log_probs, torch.tensor([2])) == [[]]
    assert CTCBeamDecoder(2, beam_size=10).decode(log_probs, torch.tensor([2])) == [[1]]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # exhaustive check on random 4 × 3 distributions
        probs = torch.softmax(torch.randn(4, 3, generator=g) * 2, dim=-1)
        best = CTCBeamDecoder(3, beam_size=16).decode(probs.log()[None], torch.tensor([4]))[0]
        candidates = {tuple(collapse(list(p), 0)) for p in itertools.product(range(3), repeat=4)}
        top = max(candidates, key=lambda c: _label_probability(probs, list(c)))
        assert _label_probability(probs, best) == pytest.approx(_label_probability(probs, list(top)))


def test_ctc_decoders_merge_repeats_remove_blanks_and_respect_lengths():
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    log_probs = torch.full((1, len(path), 4), -20.0)
    log_probs[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert ctc_greedy_decode(log_probs, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert CTCBeamDecoder(4).decode(log_probs, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert CTCBeamDecoder(4).decode(log_probs, torch.tensor([4])) == [[1, 1]]
