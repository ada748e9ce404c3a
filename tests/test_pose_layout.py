"""The 79-point layout of SPEC §1."""

from __future__ import annotations

import numpy as np

from slp.pose import layout as L


def test_kept_points_are_the_papers_1_based_list():
    one_based = list(range(1, 12)) + list(range(24, 41)) + [54] + list(range(84, 92)) + list(range(92, 134))
    assert L.WHOLEBODY_INDICES.tolist() == [i - 1 for i in one_based]
    assert L.NUM_POINTS == 79 == len(set(L.WHOLEBODY_INDICES.tolist()))


def test_parts_groups_and_counts():
    sizes = {p: s.stop - s.start for p, s in L.PART_SLICES.items()}
    assert sizes == {"body": 11, "face": 18, "mouth": 8, "left_hand": 21, "right_hand": 21}
    assert len(L.MANUAL_INDICES) == 53 and len(L.NON_MANUAL_INDICES) == 26
    assert sorted(L.MANUAL_INDICES.tolist() + L.NON_MANUAL_INDICES.tolist()) == list(range(79))
    assert L.WHOLEBODY_INDICES[L.LEFT_HAND][0] == 91 and L.WHOLEBODY_INDICES[L.RIGHT_HAND][0] == 112


def test_graph_is_connected_and_links_wrists_to_hands():
    adj = L.adjacency(self_loops=False)
    assert (adj == adj.T).all() and adj.trace() == 0
    seen, frontier = {0}, [0]
    while frontier:
        for j in np.flatnonzero(adj[frontier.pop()]):
            if int(j) not in seen:
                seen.add(int(j))
                frontier.append(int(j))
    assert len(seen) == 79
    pos = {int(s): p for p, s in enumerate(L.WHOLEBODY_INDICES)}
    assert adj[pos[9], pos[91]] == 1 and adj[pos[10], pos[112]] == 1 and adj[pos[0], pos[53]] == 1
    # Each hand is a tree of 20 edges inside its part.
    for part in ("left_hand", "right_hand"):
        s = L.PART_SLICES[part]
        assert adj[s, s].sum() / 2 == 20


def test_wholebody_to_79_selects_and_refuses_other_layouts():
    x = np.arange(133 * 3, dtype=np.float32).reshape(1, 133, 3)
    assert np.array_equal(L.wholebody_to_79(x)[0, :, 0], x[0, L.WHOLEBODY_INDICES, 0])
    try:
        L.wholebody_to_79(np.zeros((1, 137, 3)))
    except ValueError as exc:
        assert "133" in str(exc)
    else:
        raise AssertionError("a 137-point array was accepted")
