"""The extraction on Ray (slp.extract.ray_engine): the same bytes as the local engine, and a killed run that
restarts and finishes with the same files and no partial one. Runs a local Ray cluster (skips without Ray)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from slp.extract.backends import BackendSpec
from slp.extract.pipeline import SUMMARY, TEMP_SUFFIX, list_videos, run_extraction
from tests.conftest import REPO_ROOT
from tests.extract_fakes import unavailable, write_synthetic_videos

pytestmark = pytest.mark.slow
if importlib.util.find_spec("ray") is None:
    unavailable("Ray is not installed: pip install 'ray[data]' (the slp-signs[ray] extra)")

SYNTHETIC = "tests.extract_fakes:synthetic_backend"
# `slp-curate extract` as the lead wires it: the subcommand's own parser and run().
DRIVER = ("import sys; from slp.cli_errors import ArgumentParser, run_cli; from data_curation import extract\n"
          "def main(argv):\n"
          "    parser = ArgumentParser(prog='slp-curate extract'); extract.add_arguments(parser)\n"
          "    return extract.run(parser.parse_args(argv))\n"
          "sys.exit(run_cli(main, sys.argv[1:], prog='slp-curate'))")


def _pose_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.pose"))}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_synthetic_videos(folder, 12, frames=10, empty=(7,))
    reference = tmp_path_factory.mktemp("reference")
    summary = run_extraction(list_videos(folder), reference, BackendSpec(SYNTHETIC), progress=False)
    assert summary["extracted"] == 11 and summary["failures_by_reason"] == {"no_person": 1}
    return folder, reference


def test_ray_engine_on_two_cpus_writes_the_same_bytes_as_the_local_engine(videos, tmp_path, local_ray):
    folder, reference = videos
    local_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})  # actors import tests.extract_fakes
    summary = run_extraction(list_videos(folder), tmp_path, BackendSpec(SYNTHETIC), engine="ray", workers=2,
                             progress=False)
    assert summary["extracted"] == 11 and summary["failures_by_reason"] == {"no_person": 1}
    assert summary["estimators"] == ["synthetic 1.0"] and summary["engine"] == "ray"
    assert _pose_files(tmp_path) == _pose_files(reference)
    # Ray's workers run at this process's priority, not at Ray's default nice 15 (which starves them on a busy machine).
    import ray

    assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)


def _wait_until_unchanged(folder, quiet=3.0, limit=60.0):
    """The .pose files of ``folder`` once no file in it (temporaries included) has changed for ``quiet`` seconds."""
    def state():
        return sorted((p.name, p.stat().st_size) for p in folder.rglob("*") if p.is_file())

    deadline, last, since = time.monotonic() + limit, state(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        now = state()
        if now != last:
            last, since = now, time.monotonic()
    return _pose_files(folder)


def _command(folder, out):
    return [sys.executable, "-c", DRIVER, "--backend", SYNTHETIC, "--option", "delay=0.1", "--engine", "ray",
            "--workers", "2", "--videos", str(folder), "--out", str(out), "--no-progress"]


def test_a_killed_ray_run_restarts_and_finishes_with_the_same_files(videos, tmp_path):
    folder, reference = videos
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Its own session, so the kill takes the driver and the local Ray cluster it started, as a crash would.
    run = subprocess.Popen(_command(folder, out), cwd=REPO_ROOT, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("*.pose")) and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be killed"
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        run.wait()
    at_kill = _pose_files(out)
    assert 1 <= len(at_kill) < 11
    # Actors busy at the kill may finish their video before Ray's fate-sharing stops them: wait until the folder
    # stops changing. Whatever is visible, then or now, is complete.
    settled = _wait_until_unchanged(out)
    for files in (at_kill, settled):
        for name, data in files.items():
            assert data == _pose_files(reference)[name]
    assert len(settled) < 11

    restarted = subprocess.run(_command(folder, out), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                               timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert f"{len(settled)} already done" in restarted.stdout
    assert _pose_files(out) == _pose_files(reference)
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    assert (out / SUMMARY).is_file()
