"""Procedural synthetic signer corpus for demos and learning tests."""

from slp.synthetic.corpus import (
    LEXICON,
    SyntheticConfig,
    corpus_texts,
    generate_isolated,
    generate_sentences,
    gloss_name,
    sentence_plan,
    write_synthetic_corpus,
)

__all__ = [
    "LEXICON",
    "SyntheticConfig",
    "corpus_texts",
    "generate_isolated",
    "generate_sentences",
    "gloss_name",
    "sentence_plan",
    "write_synthetic_corpus",
]
