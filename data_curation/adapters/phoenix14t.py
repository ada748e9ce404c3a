"""RWTH-PHOENIX-Weather 2014 T (German Sign Language → German): sentence-level sign-text pairs.

Annotation files (``annotation_root`` = the release's ``annotations/manual/``):
``PHOENIX-2014-T.{train,dev,test}.corpus.csv`` — ``|``-separated, header
``name|video|start|end|speaker|orth|translation``, UTF-8, LF or CRLF (both occur among the copies). Option
``train_annotation: complex`` reads ``PHOENIX-2014-T.train-complex-annotation.corpus.csv`` for train instead
(the same 7,096 names, glosses keeping the markers ``__ON__``, ``__PU__``, ``loc-``…).

Poses: as Phoenix14, ``<pose root>/<split>/<name><suffix>`` or the key ``<split>/<name>`` of a pickle
collection; the whole sequence is the clip. The ``video`` column is NOT used (its frame glob differs between
copies of the release and from the frames on disk); ``start`` / ``end`` are -1 in every row of the release
(whole video) and are not used either.

Derived fields: split from the file; ``signer`` = ``speaker``; text = ``translation``; gloss sequence =
``orth`` split on whitespace (kept as annotated, like Phoenix14; the WER applies the 2014-T clean-up).
Text rule: the train-complex file ends every translation with a tokenised period `` .`` that the
train / dev / test files do not have, so one final `` .`` is removed — every split then gives the same form.
German characters (umlauts, ß) are kept as they are.

Rejects: ``malformed_row``, ``missing_id``, ``duplicate_id`` as Phoenix14, and an empty translation
(``empty_text``). An empty ``orth`` keeps the record (the text is what pre-training pairs), with no glosses.
"""

from __future__ import annotations

from data_curation.adapters.base import register_adapter
from data_curation.adapters.phoenix14 import Phoenix14Adapter
from data_curation.records import AnnotationReject, CurationRecord
from slp.data.schema import SPLITS

#: ``train_annotation`` option → the file read for the train split.
TRAIN_FILES = {"plain": "PHOENIX-2014-T.train.corpus.csv",
               "complex": "PHOENIX-2014-T.train-complex-annotation.corpus.csv"}
TOKENISED_PERIOD = " ."


@register_adapter
class Phoenix14TAdapter(Phoenix14Adapter):
    name = "phoenix14t"
    sign_language = "GSL"
    text_language = "de"
    source_kind = "TV"
    id_column, signer_column, gloss_column = "name", "speaker", "orth"
    text_column = "translation"

    def __init__(self, config, config_name: str = ""):
        super().__init__(config, config_name)
        self.train_file = TRAIN_FILES[self.choice_option("train_annotation", "plain", TRAIN_FILES)]

    def split_files(self) -> dict[str, str]:
        return {split: self.train_file if split == "train" else f"PHOENIX-2014-T.{split}.corpus.csv"
                for split in SPLITS}

    def required_columns(self) -> tuple[str, ...]:
        return *super().required_columns(), self.text_column

    def row_record(self, split: str, source_id: str, values: dict[str, str],
                   where: str) -> CurationRecord | AnnotationReject:
        text = values[self.text_column]
        if text.endswith(TOKENISED_PERIOD):
            text = text[: -len(TOKENISED_PERIOD)].rstrip()
        if not text:
            return self.reject(split, source_id, "empty_text", f"{where}: empty {self.text_column}")
        return self.record(split, source_id, self.pose_stem(split, source_id), signer=values[self.signer_column],
                           text=text, gloss=values[self.gloss_column].split(), paired=True)

