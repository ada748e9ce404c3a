"""Retrieval under data parallelism: two gloo ranks, each back-propagating its half of a batch with the gradients
then averaged as DDP does, leave the gradient of one process on the whole batch, for both similarities.

(Gathering the other ranks' embeddings without their gradient, and having every rank compute the whole loss, leaves
each rank only its own slice's part: the average is then half the gradient.)
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from finetune import retrieval
from finetune.config import FinetuneConfig
from finetune.trainer import build_encoder
from slp.config import load_config
from slp.data.schema import Sample, SampleMeta
from slp.synthetic.corpus import LEXICON

BATCH = 6


def _samples() -> list[Sample]:
    """Clips of 5-30 random frames paired with English sentences of 1-4 lexicon words."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(BATCH):
        pose = rng.uniform(0, 1, (int(rng.integers(5, 31)), 79, 3)).astype(np.float32)
        text = " ".join(LEXICON[int(w)][0] for w in rng.integers(0, 20, int(rng.integers(1, 5))))
        meta = SampleMeta(dataset="random", split="train", sign_language="ASL", text_language="en", source_id=str(i),
                          fps=25.0, width=1280, height=720, text=text, paired=True)
        samples.append(Sample(key=f"random_{i}", pose=pose, meta=meta))
    return samples


def _gradients(text_model: str, similarity: str, samples: list[Sample]) -> dict[str, np.ndarray]:
    """The parameter gradients of the retrieval head's loss on ``samples`` (this rank's part of the batch)."""
    cfg = load_config(FinetuneConfig, "configs/finetune/retrieval/synthetic.yaml",
                      ["task=retrieval", f"retrieval.text_model={text_model}", f"retrieval.similarity={similarity}",
                       "retrieval.chunk_size=2", "retrieval.embed_dim=32"])
    torch.manual_seed(0)
    head = retrieval.build_head(cfg, build_encoder(cfg, None), [], None).eval()  # no dropout: ranks agree
    head(**head.collator(train=True)(samples)).backward()
    return {name: p.grad.numpy().copy() for name, p in head.named_parameters() if p.requires_grad}


def _rank(rank: int, world: int, port: int, text_model: str, similarity: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    half = BATCH // world
    grads = _gradients(text_model, similarity, _samples()[rank * half : (rank + 1) * half])
    averaged = {}
    for name, grad in grads.items():  # DDP's averaging: the sum over ranks divided by their number
        tensor = torch.from_numpy(grad)
        dist.all_reduce(tensor)
        averaged[name] = (tensor / world).numpy()
    if rank == 0:
        queue.put(averaged)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("similarity", ["fine", "coarse"])
def test_two_ranks_average_to_the_single_process_gradient(similarity, tiny_mbart_dir):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, str(tiny_mbart_dir), similarity, queue)) for r in range(2)]
    for p in procs:
        p.start()
    averaged = queue.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single = _gradients(str(tiny_mbart_dir), similarity, _samples())
    assert averaged.keys() == single.keys() and any(k.startswith("encoder.") for k in single)
    for name, grad in single.items():
        assert np.abs(grad).max() > 0, name
        np.testing.assert_allclose(averaged[name], grad, atol=1e-5, rtol=0, err_msg=name)
