"""The frozen mBART text wrapper, loaded from a tiny local stand-in through the users' from_pretrained path."""

from __future__ import annotations

import pytest
import torch

from slp.text import FrozenTextEncoder, MBartTextTokenizer, mbart_language_code
from slp.text.tiny import build_tiny_mbart

#: WLASL-like texts: rare words, each in one sentence.
GLOSS_TEXTS = ["This word is thank you.", "This word is book.", "This word is don't want.",
               "This word is ice cream.", "The weather is good today."]


@pytest.fixture(scope="module")
def encoder(tiny_mbart_dir) -> FrozenTextEncoder:
    return FrozenTextEncoder.from_pretrained(tiny_mbart_dir)


def test_tokens_end_with_eos_then_language_code(encoder):
    ids, mask = encoder.tokenize(["This word is apple.", "Das Wetter ist gut."], ["en", "de_DE"])
    tok = encoder.tokenizer
    for row, row_mask, code in zip(ids, mask, ["en_XX", "de_DE"]):
        valid = row[row_mask].tolist()
        assert valid[-2] == tok.eos_token_id
        assert valid[-1] == tok.convert_tokens_to_ids(code)
        assert tok.pad_token_id not in valid
        assert (row[~row_mask] == tok.pad_token_id).all()
    # The plain-text pieces are the tokenizer's own, with no <s> in front.
    pieces = tok("This word is apple.", add_special_tokens=False)["input_ids"]
    assert ids[0, mask[0]].tolist()[:-2] == pieces


def test_long_text_truncated_to_max_length(tiny_mbart_dir):
    tokenizer = MBartTextTokenizer.from_pretrained(tiny_mbart_dir, max_length=16)
    ids, mask = tokenizer(["word " * 100, "short"], ["en", "zh"])
    assert ids.shape == (2, 16)
    assert mask[0].all()
    assert ids[0, -1].item() == tokenizer.language_token_id("en")
    assert ids[1, mask[1]].tolist()[-1] == tokenizer.language_token_id("zh")


def test_encoder_is_frozen_and_stays_in_eval(encoder):
    parent = torch.nn.ModuleDict({"text": encoder, "head": torch.nn.Linear(encoder.d_model, 2)})
    parent.train()
    assert not encoder.training and not encoder.encoder.training
    assert all(not p.requires_grad for p in encoder.parameters())
    feats, mask = encoder.encode(["今天天气很好。", "This word is apple."], ["zh", "en"])
    assert feats.shape[:2] == mask.shape and feats.shape[-1] == encoder.d_model
    assert not feats.requires_grad
    # A loss through a trainable head downstream leaves the text encoder without gradients.
    parent["head"](feats).sum().backward()
    assert all(p.grad is None for p in encoder.parameters())


def test_features_are_deterministic_and_padding_invariant(encoder):
    alone, _ = encoder.encode(["This word is apple."], ["en"])
    texts = ["This word is apple.", "a much longer sentence about the weather today"]
    batched, mask = encoder.encode(texts, ["en", "en"])
    n = alone.shape[1]
    assert mask[0].sum().item() == n
    torch.testing.assert_close(batched[0, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unsupported text language"):
        mbart_language_code("fr")


def test_word_stand_in_knows_each_word_of_its_texts_and_the_default_stand_in_is_unchanged(tmp_path):
    word = MBartTextTokenizer.from_pretrained(build_tiny_mbart(tmp_path / "word", GLOSS_TEXTS, model_type="word"))
    tok = word.tokenizer
    assert tok.tokenize("This word is thank you.") == ["▁This", "▁word", "▁is", "▁thank", "▁you."]
    assert tok.tokenize("This word is ice cream.") == ["▁This", "▁word", "▁is", "▁ice", "▁cream."]
    ids, mask = word(["This word is don't want."], ["en"])
    assert mask[0].sum().item() == 5 + 2  # five words, </s>, en_XX
    assert tok.unk_token_id not in ids[0, mask[0]].tolist()
    # A word outside the texts is one unknown token, not spelt out.
    assert tok.convert_tokens_to_ids(tok.tokenize("This word is bad.")) == [
        *tok.convert_tokens_to_ids(["▁This", "▁word", "▁is"]), tok.unk_token_id]
    # The default stand-in (unigram, 512 pieces at most) is what it was before the word model: on these rare words,
    # letters and short pieces.
    default = MBartTextTokenizer.from_pretrained(build_tiny_mbart(tmp_path / "default", GLOSS_TEXTS)).tokenizer
    assert len(default) == 60
    assert default.tokenize("This word is thank you.") == [
        "▁Th", "i", "s", "▁w", "o", "r", "d", "▁i", "s", "▁", "th", "an", "k", "▁", "y", "o", "u", "."]


def test_unknown_stand_in_model_type_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model_type 'bpe' is not 'unigram' or 'word'"):
        build_tiny_mbart(tmp_path, GLOSS_TEXTS, model_type="bpe")
