"""The extraction on Ray: Ray Data reads the video list and runs the backend in an actor pool.

Each actor holds one model (a :class:`~slp.extract.pipeline.VideoExtractor`) and extracts whole videos with the
same :func:`~slp.extract.pipeline.extract_video` as the local engine, so the files are byte for byte the same;
it writes them itself, so the output folder must be one every node of the cluster sees (a shared filesystem).
Actors take one CPU each and, on clusters with GPUs, ``gpus_per_worker`` GPUs (default: 1 for backends whose
:attr:`~slp.extract.backends.Backend.uses_gpu` is set, ``rtmlib`` and ``mmpose``; 0 for MediaPipe, which runs on
CPU).

``address`` joins a running cluster (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the
others, then ``address="auto"`` or ``"HEAD:6379"``); without it a local cluster starts for this run and stops
after it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from slp import DISTRIBUTION
from slp.extract.backends import BackendSpec, BackendUnavailable
from slp.extract.pipeline import VideoExtractor, VideoJob, VideoResult

#: Ray runs its workers at nice 15, below every other process of the machine. On a machine with other work, the
#: extraction actors, which are this run's work, then get a few percent of a core. A Ray that slp starts for a run runs
#: them at the caller's priority, unless the user set this variable; a cluster joined by address keeps its own setting.
WORKER_NICENESS = "RAY_worker_niceness"
#: Blocks per actor of the video list: enough that the pool stays busy to the end (a block is one actor task).
_BLOCKS_PER_WORKER = 32
UNAVAILABLE = "unavailable"  # the status of a result whose actor could not load the estimator
_PLAIN = {"str": str, "int": int}  # VideoResult's field types (annotations are strings here)


class _RayExtractor:
    """The actor's callable: a batch of videos (``path`` / ``key`` columns) → their results, one row each."""

    def __init__(self, spec: BackendSpec, out_dir: str, batch_size: int):
        self.extractor = VideoExtractor(spec, out_dir, batch_size)

    def __call__(self, batch: dict) -> dict:
        results = []
        for path, key in zip(batch["path"], batch["key"]):
            try:
                results.append(self.extractor(VideoJob(str(path), str(key))))
            except BackendUnavailable as exc:
                # Returned, not raised: Ray would retry the actor, then lose the reason in its own error.
                results.append(VideoResult(str(key), str(path), UNAVAILABLE, detail=str(exc)))
        rows = [dataclasses.asdict(r) for r in results]
        return {f.name: [row[f.name] for row in rows] for f in dataclasses.fields(VideoResult)}


def start_local_ray(**options) -> None:
    """Start a Ray cluster on this machine for one run (``options`` go to ``ray.init``), its workers at this process's
    priority (:data:`WORKER_NICENESS`). The caller restores its environment after ``ray.shutdown()``: ``ray.init``
    and this function set variables in it."""
    import ray

    os.environ.setdefault(WORKER_NICENESS, "0")
    ray.init(include_dashboard=False, log_to_driver=False, **options)


def iter_ray(jobs: list[VideoJob], spec: BackendSpec, out_dir: str | Path, batch_size: int, workers: int, *,
             address: str | None = None, gpus_per_worker: float | None = None) -> Iterator[VideoResult]:
    """Results as the actors finish videos (``workers`` actors); see the module docstring."""
    if not jobs:
        return
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(f"the ray engine needs Ray ({exc}): pip install 'ray[data]' (the "
                                 f"{DISTRIBUTION}[ray] extra)") from exc
    started_here = not ray.is_initialized()
    # ray.init sets variables of this process's environment (PYTHONBREAKPOINT, RAY_AUTH_MODE, ...): a Ray that this
    # call starts and shuts down leaves the caller's environment as it found it.
    environment = dict(os.environ)
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            start_local_ray()
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the pipeline's own bar counts videos and frames
        if gpus_per_worker is None:
            has_gpus = ray.cluster_resources().get("GPU", 0) > 0
            gpus_per_worker = 1.0 if has_gpus and spec.build().uses_gpu else 0.0
        items = [{"path": job.path, "key": job.key} for job in jobs]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), _BLOCKS_PER_WORKER * workers))
        results = dataset.map_batches(
            _RayExtractor, fn_constructor_kwargs={"spec": spec, "out_dir": str(out_dir), "batch_size": batch_size},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, num_gpus=gpus_per_worker,
            batch_format="numpy",
        )
        for row in results.iter_rows():
            if row["status"] == UNAVAILABLE:
                raise BackendUnavailable(str(row["detail"]))
            # Ray hands back numpy scalars: each value is converted to its field's type (str or int).
            yield VideoResult(**{f.name: _PLAIN[f.type](row[f.name]) for f in dataclasses.fields(VideoResult)})
    finally:
        if started_here:
            ray.shutdown()
            os.environ.clear()
            os.environ.update(environment)
