"""Pose layer: the 79-point layout, readers of 133-point sources, and loader-side normalisation."""

from slp.pose.layout import NUM_POINTS, wholebody_to_79
from slp.pose.normalize import normalize_pose
from slp.pose.readers import PoseFormatError, PoseSequence, read_pickle_collection, read_pose, to_shard_pose

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
