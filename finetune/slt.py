"""Gloss-free sign language translation head: SignPoseEncoder + MLP projector (:class:`SignProjector`) + a randomly
initialised 3-block transformer decoder cross-attending to the projected sign features (paper §III-C, Table III).

Targets are the sample texts tokenised with the mBART sentencepiece tokenizer of ``slt.text_model`` in mBART's
target layout: the decoder starts from the language code and predicts ``w1..wm </s>`` (teacher forcing,
label-smoothed cross-entropy). Only the tokenizer of mBART is used, so the checkpoint carries no mBART weights.

The decoder predicts over its own vocabulary (:class:`TargetVocabulary`): the mBART token ids present in the
training texts, plus the specials. mBART has 250k tokens; an output layer that size at width 512 is 128M parameters
for the few thousand pieces one language's corpus uses. The id map is the head's ``head_state`` (``head.json``), so
``--eval-only`` rebuilds the same decoder; generated ids are mapped back to mBART ids and detokenised.

The decoder is torch's ``nn.TransformerDecoder`` rather than an ``MBartDecoder`` built from an ``MBartConfig``: it
takes the sign padding mask as ``memory_key_padding_mask`` as it is, its API does not move with transformers
releases (whose decoder cache and mask conventions keep changing), and the beam search below owns its own state.
Decoding recomputes the prefix at every step instead of caching keys and values: targets are at most
``max_target_tokens`` (128) long and the decoder has 3 blocks, so this costs little beside the encoder.

Metrics: BLEU-1/2/4 and ROUGE-L (Chinese per character) with the sacrebleu signature, scored per text language.

From a pre-training export the head takes the encoder only; projector and decoder start random, as in the paper
(§III-C, after GFSLT). Nothing else pre-training learns corresponds to them: its sign projector maps ``AvgPool_s``
clips of the encoder's features into the contrastive space, compared by cosine with projected mBART *encoder*
states; this one maps every frame, through a batch norm (:class:`SignProjector`), into the input of a decoder that is
itself random and predicts over its own vocabulary, so copying the linear layers would give that decoder no space
it knows, and the text projector has no counterpart in a decoder that never reads mBART encoder states. The pose
decoder reconstructs coordinates, which no head predicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from finetune.config import FinetuneConfig, SLTConfig
from finetune.data import collate_sequences
from finetune.tasks import register_task
from slp.data.schema import MBART_LANGUAGE_CODES, Sample
from slp.metrics import translation_scores
from slp.models.sign_encoder import SignPoseEncoder, sinusoidal_positions
from slp.text import MBartTextTokenizer

MAIN_METRIC = "bleu4"
HIGHER_IS_BETTER = True
SCORES = ("bleu1", "bleu2", "bleu4", "rouge_l")


def keep(sample: Sample) -> bool:
    return sample.meta.paired and bool(sample.meta.text.strip())


class TargetVocabulary:
    """The decoder's vocabulary: local id ``i`` is mBART token id ``mbart_ids[i]``.

    Built from the training texts: pad, ``</s>``, unk and the language codes first, then every sentencepiece id the
    texts use, in ascending order. mBART ids outside the vocabulary map to unk.
    """

    def __init__(self, mbart_ids: Sequence[int], pad_id: int, eos_id: int, unk_id: int, language_ids: dict[str, int]):
        self.mbart_ids = [int(i) for i in mbart_ids]
        if len(set(self.mbart_ids)) != len(self.mbart_ids):
            raise ValueError("the decoder vocabulary lists an mBART id twice")
        self._local = torch.full((max(self.mbart_ids) + 1,), self.mbart_ids.index(unk_id), dtype=torch.long)
        self._local[torch.tensor(self.mbart_ids)] = torch.arange(len(self.mbart_ids))
        self.pad, self.eos, self.unk = (self.mbart_ids.index(i) for i in (pad_id, eos_id, unk_id))
        self.languages = {lang: self.mbart_ids.index(i) for lang, i in language_ids.items()}

    @classmethod
    def from_ids(cls, mbart_ids: Sequence[int], tokenizer: MBartTextTokenizer) -> TargetVocabulary:
        return cls(mbart_ids, tokenizer.pad_token_id, tokenizer.eos_token_id, int(tokenizer.tokenizer.unk_token_id),
                   tokenizer.language_token_ids)

    @classmethod
    def from_texts(cls, tokenizer: MBartTextTokenizer, texts: Sequence[str],
                   languages: Sequence[str]) -> TargetVocabulary:
        specials = [tokenizer.pad_token_id, tokenizer.eos_token_id, int(tokenizer.tokenizer.unk_token_id),
                    *(tokenizer.language_token_ids[lang] for lang in MBART_LANGUAGE_CODES)]
        ids, mask = tokenizer(texts, languages)
        pieces = sorted(set(ids[mask].tolist()) - set(specials))
        return cls.from_ids(specials + pieces, tokenizer)

    def __len__(self) -> int:
        return len(self.mbart_ids)

    def encode(self, mbart_ids: torch.Tensor) -> torch.Tensor:
        """Local ids of a tensor of mBART ids (unk for ids the training texts never used)."""
        inside = mbart_ids < len(self._local)
        return torch.where(inside, self._local[mbart_ids.clamp(max=len(self._local) - 1)], self.unk)

    def decode(self, local_ids: Sequence[int]) -> list[int]:
        return [self.mbart_ids[i] for i in local_ids]


def beam_search(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], start: torch.Tensor, eos: int,
                beam_size: int, max_len: int, length_penalty: float = 1.0) -> list[list[int]]:
    """The best continuation of each start token ``(B,)``, by batched beam search; token lists without start and eos.

    ``step(prefixes, rows)`` returns the next-token log-probabilities ``(N, V)`` of ``N`` prefixes ``(N, L)`` (start
    token first) of the samples ``rows`` ``(N,)``. A hypothesis ends with ``eos`` or at ``max_len`` tokens and scores
    its summed log-probability / length ** length_penalty, its length counting the ``eos``. As in fairseq and
    Hugging Face, ``eos`` ends a hypothesis only from the top ``beam_size`` candidates, and a sample stops once it
    has ``beam_size`` ended hypotheses none of which its best running beam, scored at the current length, beats
    (exact for length_penalty 0, where scores only fall). With beam_size 1 this is greedy decoding.
    """
    k, device = beam_size, start.device
    rows = list(range(len(start)))  # samples still searching
    histories = [[token] for token in start.tolist() for _ in range(k)]  # tokens of the running beams, start first
    scores = torch.full((len(start), k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the k beams of a sample start identical: expand only the first
    ended: list[list[tuple[float, list[int]]]] = [[] for _ in range(len(start))]
    for length in range(1, max_len + 1):
        log_probs = step(torch.tensor(histories, device=device),
                         torch.tensor(rows, device=device).repeat_interleave(k)).float()
        vocab = log_probs.shape[-1]
        total = (scores[:, :, None] + log_probs.view(len(rows), k, vocab)).view(len(rows), k * vocab)
        # 2k candidates: k of them survive as running beams even when the other k end with eos.
        top, flat = total.topk(min(2 * k, k * vocab), dim=1)
        norm = length**length_penalty
        next_rows, next_histories, next_scores = [], [], []
        for a, (sample, top_scores, indices) in enumerate(zip(rows, top.tolist(), flat.tolist())):
            running = []
            for rank, (score, index) in enumerate(zip(top_scores, indices)):
                if score == float("-inf") or len(running) == k:
                    break
                history, token = histories[a * k + index // vocab], index % vocab
                if token != eos:
                    running.append((score, history + [token]))
                elif rank < k:
                    ended[sample].append((score / norm, history[1:]))
            best_ended = sorted((s for s, _ in ended[sample]), reverse=True)
            if not running or (len(best_ended) >= k and best_ended[k - 1] >= running[0][0] / norm):
                continue  # finished: no running beam can still enter the top k
            running += [(float("-inf"), running[0][1])] * (k - len(running))  # fillers that never expand
            next_rows.append(sample)
            next_histories += [history for _, history in running]
            next_scores += [score for score, _ in running]
        if not next_rows:
            break
        rows, histories = next_rows, next_histories
        scores = torch.tensor(next_scores, device=device).view(len(rows), k)
    else:  # max_len reached: the running beams end without eos
        for a, (sample, beam_scores) in enumerate(zip(rows, scores.tolist())):
            for beam, score in enumerate(beam_scores):
                ended[sample].append((score / max_len**length_penalty, histories[a * k + beam][1:]))
    return [max(hypotheses, key=lambda h: h[0])[1] for hypotheses in ended]


class SignProjector(nn.Module):
    """The MLP from sign features to the decoder width: Linear → BatchNorm → GELU → Linear, frame by frame.

    The batch norm sees the valid frames only (the masked batch norm of Sign Language Transformers' spatial
    embedding), so padding never enters its statistics. It removes what all clips share: early in training that
    shared part is most of the encoder output, and without the norm the decoder settles on its language prior long
    before it reads the signs (on the synthetic corpus, ~100 steps to memorise 16 clips instead of ~20).
    """

    def __init__(self, in_dim: int, width: int):
        super().__init__()
        self.input = nn.Linear(in_dim, width)
        self.norm = nn.BatchNorm1d(width)
        self.act = nn.GELU()
        self.output = nn.Linear(width, width)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        frames = self.output(self.act(self.norm(self.input(features[frame_mask]))))
        out = frames.new_zeros(*frame_mask.shape, frames.shape[-1])
        out[frame_mask] = frames
        return out


@dataclass
class SLTCollator:
    """Samples → ``pose``, ``frame_mask`` of whole clips; in training the teacher-forcing ``decoder_input_ids``
    ``[lang, w1..wm]`` and ``labels`` ``[w1..wm, </s>]`` (pad-filled local ids), in evaluation the language code
    each translation starts from (``start_ids``)."""

    tokenizer: MBartTextTokenizer
    vocabulary: TargetVocabulary
    max_frames: int
    train: bool

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        pose, frame_mask = collate_sequences(samples, self.max_frames)
        if not self.train:
            start = torch.tensor([self.vocabulary.languages[s.meta.text_language] for s in samples])
            return {"pose": pose, "frame_mask": frame_mask, "start_ids": start}
        ids, mask = self.tokenizer([s.meta.text for s in samples], [s.meta.text_language for s in samples])
        local = self.vocabulary.encode(ids)  # rows [w1..wm, </s>, lang, pad…]
        language = local[torch.arange(len(samples)), mask.sum(dim=1) - 1]
        labels = local[:, :-1].masked_fill(~mask[:, 1:], self.vocabulary.pad)  # drops the trailing language code
        inputs = torch.cat([language[:, None], labels[:, :-1]], dim=1)
        return {"pose": pose, "frame_mask": frame_mask, "decoder_input_ids": inputs, "labels": labels}


class SLTHead(nn.Module):
    def __init__(self, encoder: SignPoseEncoder, tokenizer: MBartTextTokenizer, vocabulary: TargetVocabulary,
                 cfg: SLTConfig, max_frames: int = 256):
        super().__init__()
        width = cfg.decoder_width
        self.encoder = encoder
        self.projector = SignProjector(encoder.output_dim, width)
        self.embed = nn.Embedding(len(vocabulary), width, padding_idx=vocabulary.pad)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_target_tokens, width), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerDecoderLayer(width, cfg.decoder_heads, 4 * width, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.decoder_layers, norm=nn.LayerNorm(width))
        self.output = nn.Linear(width, len(vocabulary))
        self.tokenizer = tokenizer
        self.vocabulary = vocabulary
        self.cfg = cfg
        self.max_frames = max_frames
        # Never targets: decoding must not produce them.
        self.register_buffer("never_generated", torch.tensor([vocabulary.pad, *vocabulary.languages.values()]),
                             persistent=False)

    @property
    def device(self) -> torch.device:
        return self.output.weight.device

    def encode_signs(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected sign features ``(B, T, width)`` and the frame mask ``(B, T)`` (True = frame)."""
        frame_mask = frame_mask.to(self.device)
        return self.projector(self.encoder(pose.to(self.device), frame_mask), frame_mask), frame_mask

    def logits(self, tokens: torch.Tensor, memory: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(N, L, V)`` after every prefix of ``tokens`` ``(N, L)`` (local ids)."""
        length = tokens.shape[1]
        x = self.dropout(self.embed(tokens) + self.positions[:length])
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)  # True = masked
        h = self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=~frame_mask)
        return self.output(h)

    def next_token_log_probs(self, memory: torch.Tensor, frame_mask: torch.Tensor, prefixes: torch.Tensor,
                             rows: torch.Tensor) -> torch.Tensor:
        """Decoding step: log-probabilities ``(N, V)`` of the token after each prefix, for the samples ``rows``."""
        logits = self.logits(prefixes, memory[rows], frame_mask[rows])[:, -1].float()
        logits[:, self.never_generated] = float("-inf")
        return logits.log_softmax(dim=-1)

    def collator(self, train: bool) -> SLTCollator:
        return SLTCollator(self.tokenizer, self.vocabulary, self.max_frames, train)

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor, decoder_input_ids: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch (teacher forcing)."""
        logits = self.logits(decoder_input_ids, *self.encode_signs(pose, frame_mask))
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=self.vocabulary.pad,
                               label_smoothing=self.cfg.label_smoothing)

    @torch.no_grad()
    def predict(self, pose: torch.Tensor, frame_mask: torch.Tensor, start_ids: torch.Tensor) -> list[str]:
        """Beam-search translations of a batch, detokenised."""
        step = partial(self.next_token_log_probs, *self.encode_signs(pose, frame_mask))
        best = beam_search(step, start_ids.to(self.device), self.vocabulary.eos, self.cfg.beam_size,
                           self.cfg.max_target_tokens, self.cfg.length_penalty)
        return [self.tokenizer.decode(self.vocabulary.decode(tokens)) for tokens in best]

    def metrics(self, outputs: list[str], samples: list[Sample]) -> dict:
        """BLEU-1/2/4, ROUGE-L and the sacrebleu signature of each text language in the split.

        One language (the benchmarks): its scores at the top level, with ``language``. Several: each language's
        scores under ``languages`` and, at the top level, their unweighted mean over languages (corpus BLEU across
        languages would mix tokenisations), which picks the best epoch.
        """
        by_language: dict[str, tuple[list[str], list[str]]] = {}
        for sample, hypothesis in zip(samples, outputs):
            hyps, refs = by_language.setdefault(sample.meta.text_language, ([], []))
            hyps.append(hypothesis)
            refs.append(sample.meta.text)
        scores = {lang: translation_scores(hyps, refs, lang) for lang, (hyps, refs) in sorted(by_language.items())}
        if len(scores) == 1:
            ((language, only),) = scores.items()
            return {**only, "language": language}
        return {**{name: float(np.mean([s[name] for s in scores.values()])) for name in SCORES}, "languages": scores}

    def head_state(self) -> dict:
        return {"vocabulary": self.vocabulary.mbart_ids, "tokenizer_size": len(self.tokenizer)}


@register_task("slt")
def build_head(cfg: FinetuneConfig, encoder: SignPoseEncoder, train: list[Sample], state: dict | None) -> SLTHead:
    if cfg.slt.beam_size < 1:
        raise ValueError(f"slt.beam_size must be at least 1, got {cfg.slt.beam_size}")
    if cfg.data.max_frames > encoder.config.max_frames:
        raise ValueError(f"data.max_frames={cfg.data.max_frames} exceeds the encoder's max_frames="
                         f"{encoder.config.max_frames}")
    # Labels hold at most max_target_tokens tokens (words + </s>); the tokenizer's rows also end with the language.
    tokenizer = MBartTextTokenizer.from_pretrained(cfg.slt.text_model, cfg.slt.max_target_tokens + 1)
    if state is not None:
        if state["tokenizer_size"] != len(tokenizer):
            raise ValueError(f"slt: head.json was written with a tokenizer of {state['tokenizer_size']} tokens, "
                             f"slt.text_model={cfg.slt.text_model} has {len(tokenizer)}")
        vocabulary = TargetVocabulary.from_ids(state["vocabulary"], tokenizer)
    elif train:
        vocabulary = TargetVocabulary.from_texts(tokenizer, [s.meta.text for s in train],
                                                 [s.meta.text_language for s in train])
    else:
        raise ValueError("slt: no training split and no head.json beside the checkpoint: the decoder vocabulary "
                         "is unknown")
    return SLTHead(encoder, tokenizer, vocabulary, cfg.slt, cfg.data.max_frames)


def results_table(dev: dict, test: dict) -> str:
    """The layout of the paper's SLT tables (one row per split, and per language when a split mixes several)."""
    head = f"{'split':<9} {'BLEU-1':>7} {'BLEU-2':>7} {'BLEU-4':>7} {'ROUGE-L':>8}"
    rows = []
    for name, metrics in (("dev", dev), ("test", test)):
        parts = [(name, metrics)] + [(f"{name} {lang}", m) for lang, m in metrics.get("languages", {}).items()]
        rows += [f"{label:<9} {m['bleu1']:>7.2f} {m['bleu2']:>7.2f} {m['bleu4']:>7.2f} {m['rouge_l']:>8.2f}"
                 for label, m in parts]
    return "\n".join([head, *rows])
