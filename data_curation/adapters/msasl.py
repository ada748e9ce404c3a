"""MS-ASL (Vaezi Joze & Koller 2019): American Sign Language, 1,000 classes, 25,513 clips (train 16,054 /
val 5,287 / test 4,172) cut out of YouTube videos, from the official Microsoft release.

Annotation files under ``annotation_root``: ``MSASL_classes.json`` (list of the 1,000 class names, index =
label; the subsets MSASL100 / 200 / 500 / 1000 are the first N classes, so a fine-tuning config selects one
with ``data.labels`` = ``0 … N-1``) and ``MSASL_{train,val,test}.json`` (a list of clips each:
``url``, ``start_time`` / ``end_time`` in seconds, ``start`` / ``end`` frames at the annotation's ``fps``,
``label``, ``signer_id``, ``text`` / ``clean_text`` / ``org_text``, ``width`` / ``height``, ``box``, ``file``).
Only the files of the config's ``splits`` are read (val → dev).

Quirks handled: ~22 % of clips carry an extra ``review`` key; URLs may lack the scheme
(``www.youtube.com/watch?v=…``) or carry extra parameters (``&t=54s``); ``signer`` can be -1 (``signer_id``
is used, ``signer`` only when ``signer_id`` is missing); ``clean_text`` / ``org_text`` differ from the class
name for synonyms and notes ("match [light-a-MATCH]"), so the gloss is always the class name of ``label``.
Multi-word class names use underscores ("how_many"): the sentence reads them as spaces ("This word is how
many."), the gloss keeps the class name. Clips have no id of their own: ``source_id`` is
``<file split>_<position in the file, 5 digits>`` (``val_00012``), stable for a given release file. Each
record carries its video's ``width`` / ``height`` / ``fps``, so pose formats without a frame size (``.npy``,
MMPose JSON) are normalised by the right one although the web videos mix resolutions.

Poses (option ``clips``):

- ``raw`` (default): one pose file per downloaded YouTube video, named ``<youtube_id>``, cut by
  ``start_time`` / ``end_time`` (seconds: a downloaded video's frame rate can differ from the annotation's
  ``fps``, times stay right; option ``cut: frames`` uses ``start`` / ``end`` instead);
- ``trimmed``: one pose file per clip, named ``<source_id>``, used whole (``end - start`` is its expected
  length, checked by the pipeline).

Option ``pose_name`` overrides the template (fields: ``source_id``, ``split``, ``index``, ``youtube_id``,
``label``, ``gloss``, ``signer``). Rejects: ``malformed_annotation`` (missing / non-numeric fields),
``unknown_label`` (outside the class list), ``empty_gloss``, ``unparsable_url`` (``raw``: no YouTube id),
``invalid_time_range`` (``raw``: negative or reversed range). A class list or split file that is not a JSON
list stops the build with an error naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from data_curation.adapters.base import DatasetAdapter, isolated_sentence, register_adapter
from data_curation.adapters.isolated import CLIP_MODES, PoseNameTemplate
from data_curation.adapters.wlasl import youtube_id
from data_curation.records import AnnotationReject, CurationRecord
from slp.cli_errors import UserError
from slp.config import is_int, is_number

#: train / dev / test → the release's file name.
SPLIT_FILES = {"train": "MSASL_train.json", "dev": "MSASL_val.json", "test": "MSASL_test.json"}
FILE_SPLITS = {"train": "train", "dev": "val", "test": "test"}
DEFAULT_POSE_NAMES = {"trimmed": "{source_id}", "raw": "{youtube_id}"}
_TEMPLATE_FIELDS = {"source_id": "val_00000", "split": "val", "index": 0, "youtube_id": "x", "label": 0,
                    "gloss": "g", "signer": "0"}


@register_adapter
class MSASLAdapter(DatasetAdapter):
    name = "msasl"
    sign_language = "ASL"
    text_language = "en"
    source_kind = "web"

    def __init__(self, config, config_name: str = ""):
        super().__init__(config, config_name)
        self.clips = self.choice_option("clips", "raw", CLIP_MODES)
        self.cut = self.choice_option("cut", "time", ("time", "frames"))
        self.pose_name = PoseNameTemplate(self.option("pose_name", DEFAULT_POSE_NAMES[self.clips]),
                                          _TEMPLATE_FIELDS, self.config_name)

    def classes(self) -> list[str]:
        path = self.annotation_file(self.option("classes_file", "MSASL_classes.json"))
        classes = self.read_json(path)
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise UserError(f"{self.config_name}: {path} is not a JSON list of class names")
        return classes

    def annotation_records(self) -> Iterator[CurationRecord | AnnotationReject]:
        classes = self.classes()
        split_files = self.option("split_files", {})
        if not isinstance(split_files, dict) or set(split_files) - set(SPLIT_FILES):
            raise UserError(f"{self.config_name}: option split_files must map train / dev / test to files, got "
                            f"{split_files!r}")
        files = {**SPLIT_FILES, **split_files}
        for split in ("train", "dev", "test"):
            if split not in self.config.splits:
                continue
            path = self.annotation_file(files[split])
            clips = self.read_json(path)
            if not isinstance(clips, list):
                raise UserError(f"{self.config_name}: {path} holds a {type(clips).__name__}, expected a list of clips")
            for index, clip in enumerate(clips):
                yield self._clip(path.name, split, index, clip, classes)

    def _clip(self, file: str, split: str, index: int, clip: Any,
              classes: list[str]) -> CurationRecord | AnnotationReject:
        file_split = FILE_SPLITS[split]
        source_id = f"{file_split}_{index:05d}"
        where = f"{file}[{index}]"
        if not isinstance(clip, dict):
            return self.reject(split, source_id, "malformed_annotation", f"{where} is not an object")
        label = clip.get("label")
        if not is_int(label):
            return self.reject(split, source_id, "malformed_annotation", f"{where}: label {label!r}")
        if not 0 <= label < len(classes):
            return self.reject(split, source_id, "unknown_label",
                               f"{where}: label {label} outside the {len(classes)} classes")
        gloss = classes[label].strip()
        if not gloss:
            return self.reject(split, source_id, "empty_gloss", f"{where}: class {label} has an empty name")
        signer = clip.get("signer_id", clip.get("signer"))
        signer = str(signer) if isinstance(signer, int) and signer >= 0 else ""
        url = clip.get("url") if isinstance(clip.get("url"), str) else ""
        video = youtube_id(url) or ""
        fields = dict(source_id=source_id, split=file_split, index=index, youtube_id=video, label=label, gloss=gloss,
                      signer=signer)
        if self.clips == "raw" and not video and "youtube_id" in self.pose_name.template:
            return self.reject(split, source_id, "unparsable_url", f"{where}: no YouTube id in url {url!r}")
        cut: dict[str, Any] = {}
        if self.clips == "trimmed":
            start, end = clip.get("start"), clip.get("end")
            if all(map(is_int, (start, end))) and 0 <= start < end:
                cut = dict(annotated_frames=end - start)
        else:
            keys = ("start_time", "end_time") if self.cut == "time" else ("start", "end")
            start, end = clip.get(keys[0]), clip.get(keys[1])
            numeric = all(map(is_number, (start, end)))
            if not numeric:
                return self.reject(split, source_id, "malformed_annotation",
                                   f"{where}: {keys[0]} {start!r}, {keys[1]} {end!r}")
            if start < 0 or end <= start:
                return self.reject(split, source_id, "invalid_time_range",
                                   f"{where}: {keys[0]} {start}, {keys[1]} {end}")
            cut = (dict(time_start=float(start), time_end=float(end)) if self.cut == "time"
                   else dict(frame_start=int(start), frame_end=int(end)))
        sentence = isolated_sentence(gloss.replace("_", " "), self.text_language)
        return self.record(split, source_id, self.pose_name.format(fields), signer=signer, gloss=gloss, label=label,
                           text=sentence, paired=True, **cut, **_video_geometry(clip))


def _video_geometry(clip: dict) -> dict[str, Any]:
    """The clip's video width / height / fps when the annotation gives them as positive numbers (MS-ASL videos
    mix resolutions; pose formats without a frame size need them)."""
    geometry = {}
    for field, cast in (("width", int), ("height", int), ("fps", float)):
        value = clip.get(field)
        if is_number(value) and value > 0:
            geometry[field] = cast(value)
    return geometry

