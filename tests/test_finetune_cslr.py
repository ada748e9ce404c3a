"""CSLR head: output lengths through the temporal stack, the gloss vocabulary and <unk>, head.json round trip,
padding-exact CTC loss, the rule for clips too short for their labels, configs; and (slow) learning end to end
through slp-finetune with --eval-only reproducing the test metrics."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from finetune import cslr
from finetune.config import FinetuneConfig
from finetune.data import collate_sequences, load_split
from finetune.trainer import build_encoder, evaluate
from slp.config import load_config
from slp.synthetic import SyntheticConfig, generate_sentences, write_synthetic_corpus
from tests.finetune_runs import finetune_and_reevaluate
from tests.margins import LEARNING_SEED, assert_margin

CONFIG = "configs/finetune/cslr/synthetic.yaml"


def _cfg(*overrides: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, CONFIG, ["task=cslr", *overrides])


@pytest.fixture(scope="module")
def sentences():
    """Synthetic sentences of 2-4 glosses (~60-160 frames), all of one small corpus."""
    return list(generate_sentences(SyntheticConfig(num_glosses=6, num_signers=4, sentences_per_signer=3)))


def _head(train, *overrides: str) -> cslr.CSLRHead:
    cfg = _cfg(*overrides)
    torch.manual_seed(cfg.seed)
    return cslr.build_head(cfg, build_encoder(cfg, None), train, None)


def test_keep_takes_non_empty_gloss_sequences(sentences):
    sample = sentences[0]
    assert cslr.keep(sample)
    for gloss in ([], "APPLE", ""):  # no sequence, an isolated sign's gloss, no gloss
        assert not cslr.keep(dataclasses.replace(sample, meta=dataclasses.replace(sample.meta, gloss=gloss)))


@pytest.mark.parametrize("frames", [1, 15, 16, 17, 20, 31, 32, 64, 101, 256])
def test_output_lengths_match_the_temporal_stack(frames):
    stack = cslr.temporal_conv(4, 6).eval()
    predicted = int(cslr.temporal_output_lengths(torch.tensor([frames]))[0])
    if frames < cslr.temporal_min_frames():
        assert predicted == 0
        return
    with torch.no_grad():
        assert stack(torch.randn(1, 4, frames)).shape[-1] == predicted >= 1


def test_min_frames_leave_one_output_step():
    assert cslr.temporal_min_frames() == 16  # K5-P2-K5-P2: 16 → 12 → 6 → 2 → 1
    assert cslr.temporal_output_lengths(torch.tensor([15, 16])).tolist() == [0, 1]


def test_vocabulary_from_training_glosses_and_unk(sentences):
    vocabulary = cslr.GlossVocabulary.from_samples(sentences)
    seen = {g for s in sentences for g in s.meta.gloss}
    assert vocabulary.glosses == sorted(seen) and vocabulary.num_classes == len(seen) + 1  # + the blank
    first = sentences[0].meta.gloss
    ids = vocabulary.encode(first)
    assert cslr.BLANK not in ids and vocabulary.decode(ids) == first
    assert vocabulary.encode([first[0], "NEVER-SEEN"]) == [ids[0], vocabulary.unk_id]
    head = _head(sentences)
    # <unk> is past the classifier's outputs: no decoder can ever emit it
    assert head.classifier.out_features == vocabulary.num_classes == vocabulary.unk_id


def test_unseen_glosses_count_as_errors(sentences):
    head = _head(sentences).eval()

    def renamed(sample):  # its first sign annotated with a gloss the training split never had
        return dataclasses.replace(sample, meta=dataclasses.replace(sample.meta,
                                                                    gloss=["UNSEEN", *sample.meta.gloss[1:]]))

    test = [renamed(s) for s in sentences[:6]]
    words = sum(len(s.meta.gloss) for s in test)
    metrics = evaluate(head, test, 4)
    assert metrics["oov"] == pytest.approx(100 * len(test) / words)
    assert metrics["wer"] >= metrics["oov"]  # an unseen gloss can be substituted or deleted, never correct
    assert all(isinstance(metrics[k], float) for k in ("wer", "sub", "del", "ins", "oov"))


def test_head_state_round_trip_rebuilds_the_same_head(sentences):
    head = _head(sentences).eval()
    state = json.loads(json.dumps(head.head_state()))
    cfg = _cfg()
    with pytest.raises(ValueError, match="vocabulary"):
        cslr.build_head(cfg, build_encoder(cfg, None), [], None)
    rebuilt = cslr.build_head(cfg, build_encoder(cfg, None), [], state)  # --eval-only: no training split
    assert rebuilt.vocabulary.glosses == head.vocabulary.glosses
    rebuilt.load_state_dict(head.state_dict())
    assert evaluate(rebuilt, sentences, 4) == evaluate(head, sentences, 4)


def test_ctc_loss_ignores_padding(sentences):
    batch = sentences[:5]
    head = _head(sentences, "cslr.dropout=0.0", "data.max_frames=128").eval()  # eval: BN running statistics
    collate = head.collator(train=True)
    with torch.no_grad():
        log_probs, steps = head.log_probs(*collate_sequences(batch, head.max_frames))
        assert len(set(steps.tolist())) > 1, "the batch must need padding"
        padded = head(**collate(batch))
        alone = torch.stack([head(**collate([s])) for s in batch])
        assert padded.item() == pytest.approx(alone.mean().item(), rel=1e-5)
        for i, sample in enumerate(batch):
            single, single_steps = head.log_probs(*collate_sequences([sample], head.max_frames))
            n = int(steps[i])
            assert n == int(single_steps[0]) == single.shape[1]
            torch.testing.assert_close(log_probs[i, :n], single[0], rtol=1e-4, atol=1e-4)


def test_clips_too_short_for_their_labels_are_left_out_of_the_loss(sentences):
    head = _head(sentences, "cslr.dropout=0.0").eval()
    long, other = sentences[0], sentences[1]
    # 20 frames leave 2 output steps: too few for 3 glosses, or for 2 with a repeat (no CTC path)
    assert cslr.temporal_output_lengths(torch.tensor([20])).item() == 2
    collate = head.collator(train=True)

    def min_steps(sample):
        batch = collate([sample])
        return int(cslr.ctc_min_steps(batch["targets"], batch["target_lengths"])[0])

    short = next(dataclasses.replace(s, pose=s.pose[:20]) for s in sentences if min_steps(s) > 2)
    feasible = head(**collate([long, other]))
    mixed = head(**collate([long, short, other]))
    assert torch.isfinite(mixed) and mixed.item() == pytest.approx(feasible.item(), rel=1e-5)
    stub = dataclasses.replace(short, pose=short.pose[:10])  # shorter than the stack's 16 frames: 0 steps
    assert evaluate(head, [stub], 1)["del"] == 100.0  # an empty hypothesis
    head.train()
    nothing = head(**collate([short, stub]))  # no feasible clip: a zero loss that still back-propagates
    nothing.backward()
    assert nothing.item() == 0.0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())


def test_ctc_min_steps_counts_a_blank_between_repeats():
    targets = torch.tensor([[1, 2, 3, 0], [4, 4, 0, 0], [5, 5, 5, 6], [7, 0, 0, 0], [8, 8, 8, 8]])
    lengths = torch.tensor([3, 2, 4, 1, 2])  # padding repeats (0 0, the last row's 8 8) are no labels
    assert cslr.ctc_min_steps(targets, lengths).tolist() == [3, 3, 6, 1, 3]


def test_collator_pads_gloss_ids_and_keeps_only_what_predict_takes(sentences):
    head = _head(sentences)
    batch = head.collator(train=True)(sentences[:3])
    for row, length, sample in zip(batch["targets"], batch["target_lengths"], sentences[:3]):
        assert row[:length].tolist() == head.vocabulary.encode(sample.meta.gloss)
        assert (row[length:] == cslr.BLANK).all()
    assert set(head.collator(train=False)(sentences[:3])) == {"pose", "frame_mask"}


def test_results_table_has_the_papers_columns():
    dev = {"wer": 21.23, "del": 8.31, "ins": 3.06}
    test = {"wer": 22.34, "del": 8.84, "ins": 3.21}
    lines = cslr.results_table(dev, test).splitlines()
    assert lines[0].split() == ["Dev", "Test"] and lines[1].split() == ["del/ins", "WER", "del/ins", "WER"]
    assert lines[2].split() == ["8.3/3.1", "21.2", "8.8/3.2", "22.3"]


@pytest.mark.parametrize("dataset,cleanup", [("phoenix14", "phoenix2014"), ("phoenix14t", "phoenix2014t"),
                                             ("csl_daily", "csl-daily")])
def test_benchmark_configs_follow_the_papers_schedule(dataset, cleanup):
    cfg = load_config(FinetuneConfig, f"configs/finetune/cslr/{dataset}.yaml", ["task=cslr"])
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.batch_size, o.epochs, o.schedule, o.encoder_lr_scale) == (
        1e-4, 1e-5, 8, 40, "step", 0.1)
    assert cfg.data.dataset == dataset and cfg.cslr.wer_cleanup == cleanup and cfg.mixed_precision == "bf16"
    assert cfg.data.max_frames <= cfg.encoder.max_frames and cfg.cslr.beam_size > 1


def test_bad_settings_fail_when_the_head_is_built(sentences):
    for override, message in (("cslr.wer_cleanup=phoenix", "wer_cleanup"), ("cslr.beam_size=0", "beam_size"),
                              ("data.max_frames=512", "max_frames"), ("cslr.hidden=127", "even")):
        with pytest.raises(ValueError, match=message):
            _head(sentences, override)


@pytest.mark.learning
@pytest.mark.slow
def test_cslr_learns_and_eval_only_reproduces(tmp_path, capsys):
    """Measured over seeds 0-4 on 1 thread (benchmarks/learning_margins.py): test WER untrained (at most 100) minus
    trained 97.8 / 98.9 / 82.7 / 98.3 / 88.8 (mean 93.3 ± 7.2); the check asks for more than 40."""
    corpus_cfg = SyntheticConfig(num_glosses=8, num_signers=8, sentences_per_signer=30, repetitions=1)
    write_synthetic_corpus(tmp_path / "corpus", corpus_cfg)
    shards = f"data.shards=[{tmp_path / 'corpus'}/shards/*.tar]"
    # From scratch there are no pre-trained features to protect: the encoder learns at the head's rate.
    overrides = [shards, "optim.encoder_lr_scale=1.0", f"seed={LEARNING_SEED}"]
    cfg = _cfg(*overrides)
    torch.manual_seed(cfg.seed)  # the trainer's seed: the very head it starts from
    train = load_split(cfg.data.shards, "synthetic", "train", cslr.keep)
    test = load_split(cfg.data.shards, "synthetic", "test", cslr.keep)
    untrained = evaluate(cslr.build_head(cfg, build_encoder(cfg, None), train, None), test, 8)

    trained, again, table = finetune_and_reevaluate("cslr", CONFIG, tmp_path, overrides, capsys)
    with capsys.disabled():
        print(f"\n{table}CSLR test WER on held-out signers: trained {trained['test']['wer']:.1f} "
              f"(del {trained['test']['del']:.1f} ins {trained['test']['ins']:.1f}), untrained "
              f"{untrained['wer']:.1f}, empty hypotheses 100.0; example {trained['test']['examples'][0]}")
    assert "del/ins" in table and "WER" in table
    assert_margin("CSLR test WER: untrained (at most 100) vs trained", min(untrained["wer"], 100.0),
                  trained["test"]["wer"], 40)
    assert again["test"] == trained["test"] and again["dev"] == trained["dev"]
