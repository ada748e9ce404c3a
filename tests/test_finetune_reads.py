"""Fine-tuning reads only the shards that hold its data: the bytes it reads and its peak memory are those of its
dataset, however large the rest of the build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from finetune.data import load_split
from slp.data.schema import Sample, SampleMeta
from slp.data.shards import ReadStats, iter_samples, manifest_row, write_manifest, write_shard

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"train": 12, "dev": 4, "test": 4}  # the target dataset, one shard per split
OTHER_PER_SHARD = 20  # with 49 shards of another dataset, the target is 2 % of the samples


def _sample(dataset: str, split: str, index: int, rng: np.random.Generator) -> Sample:
    meta = SampleMeta(dataset=dataset, split=split, sign_language="ASL", text_language="en",
                      source_id=f"{index:06d}", fps=25.0, width=1280, height=720, text="This word is book.",
                      gloss="book", label=index % 5, paired=True)
    return Sample(f"{dataset}_{split}_{index:06d}", rng.uniform(0, 1, (4, 79, 3)).astype(np.float16), meta)


def _build(root: Path, others: int) -> str:
    """``root/shards/build-*.tar``: the target dataset's shards, then ``others`` shards of another dataset (links
    to one file: the build grows at no cost), and ``root/manifest.parquet``. Returns the shards' pattern."""
    rng = np.random.default_rng(0)
    rows = []
    for index, (split, count) in enumerate(SPLITS.items()):
        samples = [_sample("wlasl", split, i, rng) for i in range(count)]
        write_shard(root / "shards" / f"build-{index:06d}.tar", samples)
        rows += [manifest_row(s, f"build-{index:06d}.tar") for s in samples]
    other = [_sample("how2sign", "train", i, rng) for i in range(OTHER_PER_SHARD)]
    write_shard(root / "other.tar", other)
    for index in range(len(SPLITS), len(SPLITS) + others):
        os.link(root / "other.tar", root / "shards" / f"build-{index:06d}.tar")
        rows += [manifest_row(s, f"build-{index:06d}.tar") for s in other]
    write_manifest(rows, root / "manifest.parquet")
    return str(root / "shards" / "*.tar")


def test_a_downstream_dataset_reads_only_its_own_shards(tmp_path):
    pattern = _build(tmp_path, 49)
    stats = ReadStats()
    counts = {split: len(load_split([pattern], "wlasl", split, stats=stats)) for split in SPLITS}
    assert counts == SPLITS
    total = sum(p.stat().st_size for p in (tmp_path / "shards").glob("*.tar"))
    assert 0 < stats.bytes_read <= 0.05 * total
    (tmp_path / "manifest.parquet").unlink()  # without a manifest every shard is read
    fallback = ReadStats()
    assert len(load_split([pattern], "wlasl", "dev", stats=fallback)) == SPLITS["dev"]
    everything = ReadStats()
    for _ in iter_samples(sorted(str(p) for p in (tmp_path / "shards").glob("*.tar")), everything):
        pass
    assert fallback.bytes_read == everything.bytes_read


# The peak resident memory of the process's own address space (VmHWM, KiB): ru_maxrss would carry over exec the
# peak of the process that spawned it (this test's, which grows with the build it wrote).
_LOAD = """
import json, sys
from finetune.data import load_split
from slp.data.shards import ReadStats
stats = ReadStats()
counts = [len(load_split([sys.argv[1]], "wlasl", split, stats=stats)) for split in ("train", "dev", "test")]
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"counts": counts, "bytes": stats.bytes_read, "peak_kib": peak}))
"""


def _load_in_a_fresh_process(pattern: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _LOAD, pattern], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak memory from Linux's /proc")
def test_peak_memory_does_not_grow_with_the_rest_of_the_build(tmp_path):
    small = _load_in_a_fresh_process(_build(tmp_path / "small", 49))
    large = _load_in_a_fresh_process(_build(tmp_path / "large", 490))
    assert small["counts"] == large["counts"] == list(SPLITS.values())
    assert small["bytes"] == large["bytes"]
    assert large["peak_kib"] <= 1.1 * small["peak_kib"], (small, large)
