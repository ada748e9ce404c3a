"""Gloss-free translation scores: corpus BLEU-1/2/4 (sacrebleu) and ROUGE-L (rouge-score).

Chinese is scored per character: sacrebleu's ``zh`` tokenizer, and a character tokenizer for ROUGE (its default
tokenizer drops CJK characters and would give 0). The sacrebleu signature is returned with the scores so a
result can be reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU


class _CharacterTokenizer:
    """rouge-score tokenizer interface: every non-space character is a token."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def _bleu_tokenizer(language: str) -> str:
    return "zh" if language.startswith("zh") else "13a"


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], language: str) -> dict:
    """BLEU-1/2/4 and ROUGE-L F1 in percent, with sacrebleu's signature (BLEU-4's)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    tokenize = _bleu_tokenizer(language)
    out: dict = {}
    for n in (1, 2, 4):
        bleu = BLEU(max_ngram_order=n, tokenize=tokenize)
        out[f"bleu{n}"] = bleu.corpus_score(list(hypotheses), [list(references)]).score
        if n == 4:
            out["bleu_signature"] = str(bleu.get_signature())
    scorer = rouge_scorer.RougeScorer(
        ["rougeL"], tokenizer=_CharacterTokenizer() if tokenize == "zh" else None
    )
    scores = [scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references)]
    out["rouge_l"] = 100.0 * sum(scores) / max(len(scores), 1)
    return out
