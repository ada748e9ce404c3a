"""RWTH-PHOENIX-Weather 2014 (multisigner; German Sign Language, CSLR): gloss-only, so UNPAIRED samples.

Annotation files (``annotation_root`` = the release's ``annotations/manual/``): ``train.corpus.csv``,
``dev.corpus.csv``, ``test.corpus.csv`` — ``|``-separated, header ``id|folder|signer|annotation``, one
sentence a row (official counts 5,672 / 540 / 629).

Poses: ``<pose root>/<split>/<id><suffix>`` (the release's ``features/fullFrame-210x260px/<split>/<id>/``
folders, one pose file each), or, with ``poses.format: pickle``, one collection file whose keys are
``<split>/<id>`` (the naming of the SLRT / TwoStream keypoint pickles). The whole sequence is the clip.

Derived fields: split from the file; ``signer`` = the ``signer`` column (``Signer01``…); gloss sequence = the
``annotation`` split on runs of whitespace, so the stray leading / trailing spaces of 23 dev / 25 test rows
and any double space give no empty gloss. Glosses are kept as annotated (train keeps markers such as
``__EMOTION__`` or ``loc-``, dev / test only ``__ON__`` / ``__OFF__``): the evaluation's clean-up belongs to
the WER (:func:`slp.metrics.wer.clean_phoenix`), applied to references and hypotheses alike. Records are
unpaired (no translation exists): pre-training uses them for masked pose modelling only, and the glosses
serve CSLR. The ``folder`` column (a frame glob) is not used.

Rejects: a row with the wrong field count (``malformed_row``), an empty id (``missing_id``), an id already
seen in any split (``duplicate_id``, naming the first row), an empty annotation (``empty_gloss``). The known
broken train video ``13April_2011_Wednesday_tagesschau_default-14`` (which VAC / CorrNet drop) has a sound
annotation: it is kept here, and its pose decides in the pipeline.
"""

from __future__ import annotations

from data_curation.adapters.annotation_tables import SplitTableAdapter
from data_curation.adapters.base import register_adapter
from data_curation.records import AnnotationReject, CurationRecord
from slp.data.schema import SPLITS  # the corpus files are named by the shard split names: <split>.corpus.csv


@register_adapter
class Phoenix14Adapter(SplitTableAdapter):
    name = "phoenix14"
    sign_language = "GSL"
    text_language = ""
    source_kind = "TV"
    # Column names of the corpus tables (Phoenix-2014-T names them differently).
    id_column, signer_column, gloss_column = "id", "signer", "annotation"

    def split_files(self) -> dict[str, str]:
        return {split: f"{split}.corpus.csv" for split in SPLITS}

    def required_columns(self) -> tuple[str, ...]:
        return self.id_column, self.signer_column, self.gloss_column

    def row_record(self, split: str, source_id: str, values: dict[str, str],
                   where: str) -> CurationRecord | AnnotationReject:
        gloss = values[self.gloss_column].split()
        if not gloss:
            return self.reject(split, source_id, "empty_gloss", f"{where}: empty {self.gloss_column}")
        return self.record(split, source_id, self.pose_stem(split, source_id), signer=values[self.signer_column],
                           gloss=gloss, paired=False)

    @staticmethod
    def pose_stem(split: str, source_id: str) -> str:
        """``<split>/<id>``: the file under the pose root, or the key of a pickle collection."""
        return f"{split}/{source_id}"

