"""Shared fixtures: the real-data folder (skipped when absent), the tiny local mBART stand-in, and a guard that no
test leaves process-wide state behind for the tests after it."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from tests.margins import LEARNING_SEED, learning_threads

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("SLP_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs the suite on several workers) each worker is one of several processes
    sharing the cores: it takes its share by slp's thread rule, and the processes its tests start inherit that share
    through ``OMP_NUM_THREADS``. Without it every worker would take every core (DEVELOPERS.md: two threads per process
    made a step 14× slower while another process ran)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        from slp.threads import set_process_threads

        set_process_threads(int(workers))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The files marked ``longest`` go first. ``make test`` hands the files out to its pytest-xdist workers in this
    order (``--dist loadfile --no-loadscope-reorder``), so that the run does not end on one of them while the other
    workers are idle. The order is otherwise pytest-randomly's: it shuffles before this hook runs."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)``'s folder, built once per run: under pytest-xdist every worker's session fixtures are its own,
    so a fixture that takes minutes would be built once per worker. Here the first worker to ask builds it in the
    run's shared temporary folder, a worker asking meanwhile waits on the lock, and the others find it built."""
    import fcntl

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / name
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed while building left
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


#: Variables that are not a test's doing: pytest's own (the running test and phase), and those libraries set once
#: when they are first imported, to the same value whichever test imports them (torch's inductor cache folder and
#: NVML check on importing deepspeed, Ray's client mode).
NOT_A_TESTS_STATE = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR", "PYTORCH_NVML_BASED_CUDA_CHECK",
                     "RAY_CLIENT_MODE"}


@dataclass(frozen=True)
class ProcessState:
    """What one test can change for every later test of the same process (the suite runs in random order)."""

    torch_threads: int
    default_dtype: object
    deterministic: bool
    cwd: str
    environment: tuple
    root_log_level: int
    distributed: bool

    @classmethod
    def now(cls) -> ProcessState:
        import torch

        return cls(torch.get_num_threads(), torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
                   os.getcwd(), tuple(sorted((k, v) for k, v in os.environ.items() if k not in NOT_A_TESTS_STATE)),
                   logging.getLogger().level,
                   torch.distributed.is_available() and torch.distributed.is_initialized())

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.torch_threads)
        torch.set_default_dtype(self.default_dtype)
        torch.use_deterministic_algorithms(self.deterministic)
        os.chdir(self.cwd)
        for key in set(os.environ) - {k for k, _ in self.environment} - NOT_A_TESTS_STATE:
            del os.environ[key]
        os.environ.update(dict(self.environment))
        logging.getLogger().setLevel(self.root_log_level)
        if not self.distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.fixture(autouse=True)
def process_state_is_left_as_found(request):
    """Fails the test that changed process-wide state (torch threads, default dtype, deterministic algorithms, working
    directory, environment, root log level, a process group) and puts it back, so the next test is not affected;
    random generators are put back silently (tests seed them on purpose)."""
    import random

    import numpy as np
    import torch

    before = ProcessState.now()
    rng = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    yield
    after = ProcessState.now()
    random.setstate(rng[0])
    np.random.set_state(rng[1])
    torch.random.set_rng_state(rng[2])
    if after != before:
        before.restore()
        changed = [f.name for f in fields(ProcessState) if getattr(before, f.name) != getattr(after, f.name)]
        if "environment" in changed:
            old, new = dict(before.environment), dict(after.environment)
            keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            changed[changed.index("environment")] = f"environment ({', '.join(keys)})"
        pytest.fail(f"{request.node.nodeid} left process-wide state changed: {'; '.join(changed)}", pytrace=False)


@pytest.fixture(autouse=True)
def learning_tests_compute_on_pinned_threads(request):
    """A test marked ``learning`` runs on LEARNING_THREADS torch threads (OMP_NUM_THREADS too, which the trainer's
    thread rule follows), so that its margins are those measured for that count on any machine. No monkeypatch here:
    an autouse fixture that requested it would undo the tests' own patches only after the state guard's check."""
    if request.node.get_closest_marker("learning") is None:
        yield
        return
    with learning_threads():
        yield


@pytest.fixture
def local_ray():
    """``start(**ray_init_options)`` starts a local Ray for the test as slp starts one (its workers at the test's
    priority); after it Ray is shut down and the variables ray.init set in this process's environment
    (PYTHONBREAKPOINT, RAY_AUTH_MODE, ...) are put back."""
    from tests.extract_fakes import unavailable

    if importlib.util.find_spec("ray") is None:
        unavailable("Ray is not installed: pip install 'ray[data]' (the dev extra installs it)")
    import ray

    from slp.extract.ray_engine import start_local_ray

    environment = dict(os.environ)
    yield start_local_ray
    ray.shutdown()
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """``../shared/realdata`` (or ``$SLP_REALDATA``); tests using it skip cleanly when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} not present")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_mbart_dir(tmp_path_factory) -> Path:
    """A tiny mBART + sentencepiece tokenizer trained on the synthetic corpus texts (built once per run)."""
    from slp.synthetic import SyntheticConfig, corpus_texts
    from slp.text.tiny import build_tiny_mbart

    return built_once(tmp_path_factory, "tiny_mbart",
                      lambda out: build_tiny_mbart(out, corpus_texts(SyntheticConfig())))


# Noisy signers with frequent detector failures: raw pose statistics no longer separate the glosses, features
# that generalise across signers do. Shared by the linear-probe and fine-tuning tests.
PRETRAIN_CORPUS = dict(num_glosses=30, num_signers=10, dev_signers=1, test_signers=2, repetitions=2,
                       sentences_per_signer=10, shard_samples=100, noise=0.05, point_dropout=0.1, hand_dropout=0.15)


@pytest.fixture(scope="session")
def pretrained_tiny(tmp_path_factory, tiny_mbart_dir):
    """(corpus config, corpus dir, export dir): the `tiny` model pre-trained 400 steps on a synthetic corpus (train
    split), exported as pre-training exports it: the encoder and the sign-text alignment module."""
    import itertools

    import torch

    from pretrain.config import PretrainRunConfig
    from slp.config import load_config
    from slp.data.loader import PretrainDataConfig, pretrain_batches
    from slp.models.pretraining import PretrainingModel
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus
    from slp.text import FrozenTextEncoder

    corpus_cfg = SyntheticConfig(**PRETRAIN_CORPUS)

    def build(out: Path) -> None:
        write_synthetic_corpus(out / "corpus", corpus_cfg)
        run = load_config(PretrainRunConfig, REPO_ROOT / "configs" / "pretrain" / "tiny.yaml")
        text_encoder = FrozenTextEncoder.from_pretrained(tiny_mbart_dir, 64)
        torch.manual_seed(LEARNING_SEED)
        model = PretrainingModel(run.model, run.loss)
        data = PretrainDataConfig(shards=[str(out / "corpus" / "shards" / "*.tar")], batch_size=16, max_frames=64,
                                  max_text_tokens=64, shuffle_buffer=100, bucket_batches=4, seed=LEARNING_SEED)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        model.train()
        with learning_threads():  # the learning tests' margins are measured on this many threads
            for batch in itertools.islice(pretrain_batches(data, text_encoder.text_tokenizer), 400):
                text = text_encoder(batch.input_ids, batch.text_mask)
                loss = model(batch.pose, batch.frame_mask, batch.joint_mask, text, batch.text_mask,
                             batch.paired)["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.save_pretrained(out / "encoder", text_model=str(tiny_mbart_dir))

    out = built_once(tmp_path_factory, "pretrained_tiny", build)
    return corpus_cfg, out / "corpus", out / "encoder"
