"""WLASL (Li et al. 2020): American Sign Language, 2,000 glosses, 21,083 clips (train 14,289 / val 3,916 /
test 2,878) from the official ``WLASL_v0.3.json``.

Annotation: a JSON list of ``{"gloss": str, "instances": [...]}`` in label order — the position of a gloss in
the list is its class index (the one of ``nslt_N.json`` and ``wlasl_class_list.txt``), and the subsets
WLASL100 / 300 / 1000 / 2000 are exactly the clips of labels ``< N`` (checked against the official
``nslt_N.json``), so a fine-tuning config selects one with ``data.labels`` = ``0 … N-1``. Each instance
carries ``video_id`` (a *string*: "05237" keeps its leading zero), ``split`` (train / val / test),
``signer_id``, ``frame_start`` (1-based) and ``frame_end`` (inclusive, ``-1`` = to the end of the video),
``url``, ``source``, ``fps``, ``bbox``. Glosses may hold spaces and apostrophes ("thank you",
"don't want"); the sentence is the template's ("This word is thank you.").

Poses (option ``clips``):

- ``trimmed`` (default): one pose file per instance, named ``<video_id>`` — what the official start kit's
  ``preprocess.py`` writes to ``videos/<video_id>.mp4`` (each instance cut out of its source video); the
  whole sequence is the clip, the frame range is not applied again (an explicit range gives the clip's
  expected length, ``frame_end - frame_start + 1``, which the pipeline checks against the pose);
- ``raw``: one pose file per *downloaded* source video, named ``<source_video>`` (the YouTube id for YouTube
  URLs, as the start kit names its raw downloads, the ``video_id`` otherwise), cut to
  ``[frame_start - 1, frame_end)`` (0-based, end exclusive; ``frame_end = -1`` → to the end).

Option ``pose_name`` overrides the file-name template (fields: ``video_id``, ``source_id``,
``source_video``, ``gloss``, ``label``, ``split``, ``signer``). Option ``annotation_file`` names the JSON
(default ``WLASL_v0.3.json``, relative to ``annotation_root``).

The JSON must parse: a truncated file stops the build with an error naming it (its line and column).

Rejects: ``malformed_annotation`` (an instance without ``video_id`` / ``split``, or a gloss entry that is
not an object with a gloss and a list of instances), ``empty_gloss``, ``unknown_split``, ``duplicate_id``
(a ``video_id`` seen earlier in the file), ``invalid_frame_range`` (``raw`` only: ``frame_start < 1`` or
``frame_end`` before it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

from data_curation.adapters.base import DatasetAdapter, isolated_sentence, normalise_split, register_adapter
from data_curation.adapters.isolated import CLIP_MODES, PoseNameTemplate
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError
from slp.config import is_int

DEFAULT_POSE_NAMES = {"trimmed": "{video_id}", "raw": "{source_video}"}
_TEMPLATE_FIELDS = {"video_id": "00000", "source_id": "00000", "source_video": "x", "gloss": "g", "label": 0,
                    "split": "train", "signer": "0"}


def youtube_id(url: str) -> str | None:
    """The video id of a YouTube URL (``watch?v=``, ``youtu.be/``, ``embed/``; scheme optional), else None."""
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    parsed = urlparse(text)
    host = parsed.netloc.lower()
    if host.endswith("youtu.be"):
        candidate = parsed.path.strip("/").split("/")[0]
    elif "youtube" in host:
        candidate = (parse_qs(parsed.query).get("v") or [""])[0]
        if not candidate:
            parts = [p for p in parsed.path.split("/") if p]
            candidate = parts[1] if len(parts) >= 2 and parts[0] in ("embed", "v", "shorts") else ""
    else:
        return None
    return candidate or None


@register_adapter
class WLASLAdapter(DatasetAdapter):
    name = "wlasl"
    sign_language = "ASL"
    text_language = "en"
    source_kind = "web"

    def __init__(self, config, config_name: str = ""):
        super().__init__(config, config_name)
        self.clips = self.choice_option("clips", "trimmed", CLIP_MODES)
        self.pose_name = PoseNameTemplate(self.option("pose_name", DEFAULT_POSE_NAMES[self.clips]),
                                          _TEMPLATE_FIELDS, self.config_name)

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        path = self.annotation_file(self.option("annotation_file", "WLASL_v0.3.json"))
        glosses = self.read_json(path)
        if not isinstance(glosses, list):
            raise UserError(f"{self.config_name}: {path} holds a {type(glosses).__name__}, expected the list of "
                             f"{{gloss, instances}} objects of WLASL_v0.3.json")
        seen: set[str] = set()
        for label, entry in enumerate(glosses):
            if not isinstance(entry, dict) or not isinstance(entry.get("instances"), list):
                yield self.reject("", f"gloss#{label}", "malformed_annotation",
                                  f"{path.name}: entry {label} is not a {{gloss, instances: [...]}} object")
                continue
            gloss = entry.get("gloss")
            gloss = gloss.strip() if isinstance(gloss, str) else ""
            for position, instance in enumerate(entry["instances"]):
                yield self._instance(path.name, label, gloss, position, instance, seen)

    def _instance(self, file: str, label: int, gloss: str, position: int, instance: Any,
                  seen: set[str]) -> CurationRecord | AnnotationReject:
        where = f"{file}: gloss {label} ({gloss!r}) instance {position}"
        if not isinstance(instance, dict):
            return self.reject("", f"gloss{label}#{position}", "malformed_annotation", f"{where} is not an object")
        video_id = instance.get("video_id")
        raw_split = instance.get("split")
        if not isinstance(video_id, str) or not video_id.strip() or not isinstance(raw_split, str):
            # An int video_id would already have lost its leading zeros: refuse it rather than guess them back.
            source_id = f"gloss{label}#{position}" if video_id is None else str(video_id)
            return self.reject(str(raw_split or ""), source_id, "malformed_annotation",
                               f"{where}: video_id {video_id!r} / split {raw_split!r} (video_id must be a string)")
        video_id = video_id.strip()
        split = normalise_split(raw_split)
        if split is None:
            return self.reject(raw_split, video_id, "unknown_split", f"{where}: split {raw_split!r}")
        if not gloss:
            return self.reject(split, video_id, "empty_gloss", f"{where}: gloss {gloss!r}")
        if video_id in seen:
            return self.reject(split, video_id, "duplicate_id", f"{where}: video_id {video_id} appears earlier")
        seen.add(video_id)
        signer = instance.get("signer_id")
        url = instance.get("url") if isinstance(instance.get("url"), str) else ""
        fields = dict(video_id=video_id, source_id=video_id, source_video=youtube_id(url) or video_id,
                      gloss=gloss, label=label, split=split, signer="" if signer is None else str(signer))
        frames: dict[str, int | None] = {}
        start, end = instance.get("frame_start", 1), instance.get("frame_end", -1)
        valid_range = (all(map(is_int, (start, end))) and start >= 1
                       and (end == -1 or end >= start))
        if self.clips == "raw":
            if not valid_range:
                return self.reject(split, video_id, "invalid_frame_range",
                                   f"{where}: frame_start {start!r}, frame_end {end!r} (1-based, inclusive, -1 = end)")
            frames = dict(frame_start=start - 1, frame_end=None if end == -1 else end)
        elif valid_range and end != -1:
            frames = dict(annotated_frames=end - start + 1)
        return self.record(split, video_id, self.pose_name.format(fields), signer=fields["signer"], gloss=gloss,
                           label=label, text=isolated_sentence(gloss, self.text_language), paired=True, **frames)

