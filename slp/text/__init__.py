"""Text side of the model: the frozen mBART encoder and its tokenizer."""

from slp.text.mbart import (
    DEFAULT_TEXT_ENCODER,
    MAX_TEXT_TOKENS,
    FrozenTextEncoder,
    MBartTextTokenizer,
    mbart_language_code,
)

__all__ = ["DEFAULT_TEXT_ENCODER", "MAX_TEXT_TOKENS", "FrozenTextEncoder", "MBartTextTokenizer", "mbart_language_code"]
