"""How tests/conftest.py helps ``make test`` share the suite out among pytest-xdist workers: the files marked
``longest`` first, and the fixtures that take minutes built once per run, not once per worker."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import built_once, pytest_collection_modifyitems


class _Item:
    def __init__(self, nodeid: str, longest: bool = False):
        self.nodeid, self.marks = nodeid, [pytest.mark.longest.mark] if longest else []

    def get_closest_marker(self, name: str):
        return next((m for m in self.marks if m.name == name), None)


def test_the_longest_files_go_first_and_the_rest_keep_their_order():
    items = [_Item("tests/test_a.py::one"), _Item("tests/test_long.py::one", True), _Item("tests/test_b.py::one"),
             _Item("tests/test_a.py::two"), _Item("tests/test_long.py::two", True)]
    order = [item.nodeid for item in items]
    pytest_collection_modifyitems(None, items)
    assert [item.nodeid for item in items] == [order[1], order[4], order[0], order[2], order[3]]


class _Worker:
    """A worker's ``tmp_path_factory``: its own base folder in the run's shared one."""

    def __init__(self, run, name: str):
        self.base = run / name

    def getbasetemp(self):
        return self.base


def test_a_fixture_built_once_is_built_by_one_worker_while_the_others_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    builds, folders = [], []

    def build(folder):
        builds.append(folder)
        time.sleep(0.3)  # long enough that every other worker asks while it builds
        (folder / "model.bin").write_text("weights")

    workers = [threading.Thread(target=lambda w=w: folders.append(built_once(_Worker(tmp_path, w), "model", build)))
               for w in ("gw0", "gw1", "gw2")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert builds == [tmp_path / "model"] and folders == [tmp_path / "model"] * 3
    assert (tmp_path / "model" / "model.bin").read_text() == "weights"


def test_a_build_that_failed_is_built_again_from_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")

    def failing(folder):
        (folder / "half").write_text("")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        built_once(_Worker(tmp_path, "gw0"), "model", failing)
    seen = []
    assert built_once(_Worker(tmp_path, "gw1"), "model", lambda folder: seen.extend(folder.iterdir())) == \
        tmp_path / "model"
    assert seen == []
