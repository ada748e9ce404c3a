"""The record an adapter produces for one clip, before its pose is read.

Adapters turn a dataset's original annotations into :class:`CurationRecord` objects; the pipeline reads the
pose each record points at, cuts the clip, validates it and writes it to a shard (or to the rejects log).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CurationRecord:
    dataset: str
    split: str  # the dataset's own split name, normalised to train / dev / test
    source_id: str  # the dataset's own id of the clip (kept as a string: WLASL ids have leading zeros)
    sign_language: str  # ASL, BSL, CSL, GSL
    text_language: str  # en, de, zh ("" for unpaired samples without any language)
    pose_path: str  # file holding the pose sequence (absolute, or relative to the dataset's pose root)
    pose_key: str | None = None  # key inside a collection file (SLRT pickle), None for one file per clip
    signer: str = ""
    # Clip inside the pose sequence: frames (0-based, end exclusive) or times in seconds (converted with the
    # sequence's fps by the pipeline). None means from the start / to the end of the sequence.
    frame_start: int | None = None
    frame_end: int | None = None
    time_start: float | None = None
    time_end: float | None = None
    text: str = ""
    gloss: str | list[str] = ""
    label: int = -1
    paired: bool = False
    extra_hand_path: str | None = None  # optional second hand source for the same clip (SPEC §2)
    # The clip's video geometry when the annotations know it (MS-ASL records each video's size and fps): used for
    # pose formats that do not record them (.npy, MMPose JSON, pickles) instead of the dataset-wide config values,
    # since web datasets mix resolutions; where the pose file records its own, the file's wins and a disagreement
    # is counted (the pipeline's geometry rule). 0 = unknown.
    width: int = 0
    height: int = 0
    fps: float = 0.0
    # The clip's length in frames by the annotations (CSL-Daily's length, NMFs-CSL's seq_len, a trimmed WLASL /
    # MS-ASL clip's range), checked against the pose: a pose file of another length may not be this clip.
    # 0 = unknown.
    annotated_frames: int = 0
    key: str = ""  # shard key (no dots); adapters build it with slp.data.schema.make_key


@dataclass
class AnnotationReject:
    """An annotation entry an adapter could not turn into a record (empty text, bad cue, malformed row…).

    It goes to ``rejects.parquet`` with its reason, like a record whose pose fails, so counts reconcile.
    """

    dataset: str
    split: str
    source_id: str
    reason: str  # short machine-readable reason, e.g. "empty_text", "reversed_cue"
    detail: str = ""  # human-readable: the file, the line or cue, what was wrong
