"""Pose layer: the 79-point layout, readers of 133-point sources, and loader-side normalisation.

The names load on first use (:mod:`slp.lazy`), so that the light submodules (the layout, the readers' file checks) do
not load torch through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slp.lazy import lazy_names

if TYPE_CHECKING:
    from slp.pose.layout import NUM_POINTS, wholebody_to_79
    from slp.pose.normalize import normalize_pose
    from slp.pose.readers import PoseFormatError, PoseSequence, read_pickle_collection, read_pose, to_shard_pose

#: Each public name → the module that defines it.
_MODULE_OF = {
    "NUM_POINTS": "slp.pose.layout",
    "PoseFormatError": "slp.pose.readers",
    "PoseSequence": "slp.pose.readers",
    "normalize_pose": "slp.pose.normalize",
    "read_pickle_collection": "slp.pose.readers",
    "read_pose": "slp.pose.readers",
    "to_shard_pose": "slp.pose.readers",
    "wholebody_to_79": "slp.pose.layout",
}

__all__ = [
    "NUM_POINTS",
    "PoseFormatError",
    "PoseSequence",
    "normalize_pose",
    "read_pickle_collection",
    "read_pose",
    "to_shard_pose",
    "wholebody_to_79",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
