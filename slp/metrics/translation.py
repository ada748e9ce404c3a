"""Gloss-free translation scores: corpus BLEU-1/2/4 (sacrebleu) and ROUGE-L as the SLT papers compute it.

BLEU is sacrebleu's corpus BLEU with its defaults (``13a`` tokenizer, exponential smoothing, case-sensitive);
Chinese uses sacrebleu's ``zh`` tokenizer. The signature is returned with the scores so a result can be
reproduced exactly.

ROUGE-L is COCO's (pycocoevalcap ``rouge.py``, the scorer the SLT papers' code calls): per sentence, with ``L``
the length of the longest common subsequence of hypothesis and reference tokens, precision ``P = L / |hyp|``,
recall ``R = L / |ref|`` and ``F = (1 + β²) P R / (R + β² P)`` with β = 1.2 (0 when ``L`` is 0), averaged over
sentences. COCO takes the best precision and recall over several references; here each sentence has one. Tokens
are whitespace-separated words as they are — no lower-casing, no dropping of non-ASCII letters (rouge-score's
default tokenizer drops ä, ö, ü, ß, and its F-measure has β = 1) — and, for Chinese, characters. COCO splits on
single spaces; on text with runs of spaces or tabs, whitespace splitting is what is meant.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU

ROUGE_BETA = 1.2


def _is_chinese(language: str) -> bool:
    return language.startswith("zh")


def _rouge_tokens(text: str, chinese: bool) -> list[str]:
    return [c for c in text if not c.isspace()] if chinese else text.split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_sentence(hypothesis: Sequence[str], reference: Sequence[str], beta: float = ROUGE_BETA) -> float:
    """COCO's ROUGE-L F-measure (a fraction) of one tokenized hypothesis against one tokenized reference."""
    common = lcs_length(hypothesis, reference)
    if common == 0:
        return 0.0
    precision, recall = common / len(hypothesis), common / len(reference)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], language: str) -> dict:
    """BLEU-1/2/4 and ROUGE-L in percent, with sacrebleu's signature (BLEU-4's)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    chinese = _is_chinese(language)
    out: dict = {}
    for n in (1, 2, 4):
        bleu = BLEU(max_ngram_order=n, tokenize="zh" if chinese else "13a")
        out[f"bleu{n}"] = bleu.corpus_score(list(hypotheses), [list(references)]).score
        if n == 4:
            out["bleu_signature"] = str(bleu.get_signature())
    scores = [rouge_l_sentence(_rouge_tokens(hyp, chinese), _rouge_tokens(ref, chinese))
              for hyp, ref in zip(hypotheses, references)]
    out["rouge_l"] = 100.0 * sum(scores) / max(len(scores), 1)
    return out
