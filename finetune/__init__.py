"""Fine-tuning and evaluation heads (ISLR, CSLR, gloss-free SLT, retrieval) and the ``slp-finetune`` command."""
