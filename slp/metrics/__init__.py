"""Metrics of the papers' tables: ISLR accuracy, WER (sclite conventions), BLEU / ROUGE-L, retrieval; CTC decoding."""

from slp.metrics.recognition import islr_accuracy
from slp.metrics.retrieval import retrieval_metrics
from slp.metrics.translation import translation_scores
from slp.metrics.wer import clean_phoenix, read_stm, wer

__all__ = ["clean_phoenix", "islr_accuracy", "read_stm", "retrieval_metrics", "translation_scores", "wer"]
