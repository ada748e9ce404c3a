"""Model cards (``README.md``): the one :meth:`SignPoseEncoder.save_pretrained` writes beside the weights
(:func:`render_model_card`), and the blocks every slp card is made of (:func:`render_card`; fine-tuned heads'
cards: :mod:`finetune.export`).

Hugging Face YAML metadata first, then how to install slp and run the model (a Python example that runs as
written once ``ORG/NAME`` is the repository or folder), what the model is for and what it is not (a model trained on
slp's synthetic corpus says it is a demo), then what a user of the model must match to get meaningful outputs: the
architecture and its config, the pose specification (the 79 points by COCO-WholeBody index, the normalisation,
the estimator the model was trained on), the training data (per-dataset counts and the manifest's sha256) and,
when given, the pre-training run's figures and a metrics table.

A card names no path of the machine that wrote it: a text model that was a local folder is described, not named
(:func:`text_model_reference`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from slp import DISTRIBUTION
from slp.pose.export import COMPONENT_NAMES, POINT_NAMES
from slp.pose.layout import NUM_POINTS, PART_NAMES, POINT_PART, WHOLEBODY_INDICES
from slp.synthetic.corpus import DATASET as SYNTHETIC_DATASET

LICENSE = "apache-2.0"
TAGS = ("sign-language", "pose", "keypoints", "coco-wholebody", "safetensors")
_TRAINING_DATA_KEYS = {"counts", "manifest_sha256"}
#: What the placeholder of a card's examples stands for: a Hub repository id or the folder itself.
PLACEHOLDER = "ORG/NAME"


def training_data_from_manifest(paths: str | Path | Sequence[str | Path],
                                keep: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """``{"counts": {dataset: samples}, "manifest_sha256": ...}`` of one or more curation ``manifest.parquet``
    files: the rows ``keep`` accepts (it sees a row's ``key``, ``shard``, ``dataset`` and ``split``; None: every
    row), and the sha256 of the files' bytes in path order (of the one file, for one manifest)."""
    import pyarrow.parquet as pq

    paths = [Path(paths)] if isinstance(paths, (str, Path)) else sorted(Path(p) for p in paths)
    counts: Counter[str] = Counter()
    digest = hashlib.sha256()
    for path in paths:
        columns = ["dataset"] if keep is None else ["key", "shard", "dataset", "split"]
        rows = pq.read_table(path, columns=columns).to_pylist()
        counts.update(row["dataset"] for row in rows if keep is None or keep(row))
        digest.update(path.read_bytes())
    return {"counts": dict(sorted(counts.items())), "manifest_sha256": digest.hexdigest()}


def card_data_from_shards(shards: Sequence[str | Path], keep: Callable[[dict[str, Any]], bool] | None = None
                          ) -> dict[str, Any]:
    """What a card states about a run that read ``shards`` (paths), by the manifests beside them
    (:func:`slp.data.shards.find_manifest`): ``{"training_data": ..., "pose_estimator": ...}``, keywords of
    :func:`render_card`. Counts and estimators (``"; "``-joined) are those of the rows of these shards that ``keep``
    accepts (it sees a row's ``key``, ``shard``, ``dataset`` and ``split``; None: every row). ``{}`` when no shard
    has a manifest."""
    import pyarrow.parquet as pq

    from slp.data.shards import find_manifest

    manifests = sorted({find_manifest(Path(s).parent) for s in shards} - {None})
    if not manifests:
        return {}
    names = {Path(s).name for s in shards}

    def read(row: dict[str, Any]) -> bool:
        return row["shard"] in names and (keep is None or keep(row))

    estimators: set[str] = set()
    for manifest in manifests:
        if "pose_estimator" in pq.read_schema(manifest).names:
            rows = pq.read_table(manifest, columns=["key", "shard", "dataset", "split", "pose_estimator"]).to_pylist()
            estimators.update(row["pose_estimator"] for row in rows if read(row))
    return {"training_data": training_data_from_manifest(manifests, read),
            "pose_estimator": "; ".join(sorted(e for e in estimators if e))}


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def front_matter(pipeline_tag: str | None, tags: Sequence[str] = (), **extra: Any) -> str:
    """The Hugging Face YAML metadata block: library, licence, ``pipeline_tag`` (None: none fits), the common
    :data:`TAGS` then ``tags``, then ``extra`` keys (``base_model``, ``model-index``…)."""
    metadata: dict[str, Any] = {"library_name": DISTRIBUTION, "license": LICENSE}
    if pipeline_tag:
        metadata["pipeline_tag"] = pipeline_tag
    metadata["tags"] = [*TAGS, *(t for t in tags if t not in TAGS)]
    metadata.update(extra)
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---"


def is_hub_id(name_or_path: str) -> bool:
    """Whether ``name_or_path`` is a Hugging Face Hub repository id rather than a local path: no file or folder of
    that name here, and a valid id (``name`` or ``org/name``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name_or_path).exists():
        return False
    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        return False
    return True


def text_model_reference(name_or_path: str) -> str:
    """How a card names a text model: a Hub repository id in backquotes; a local folder (any path) as "a local text
    model", its path meaning nothing on another machine."""
    return f"`{name_or_path}`" if is_hub_id(name_or_path) else "a local text model"


def sha256_of_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def usage_section(python: str, *more: str) -> str:
    """``## Usage``: the install line, the ``python`` example (code, without fences; :data:`PLACEHOLDER` names the
    model) and ``more`` paragraphs."""
    return "\n\n".join(["## Usage", f"```bash\npip install {DISTRIBUTION}   # the import package is `slp`\n```",
                         f"```python\n{python.strip()}\n```", *more])


def intended_use_section(datasets: Mapping[str, int] | None, *, model: str, synthetic_content: str = "") -> str:
    """``## Intended use and limitations`` of a ``model`` (its kind, e.g. "pose encoder") trained on ``datasets``
    (dataset → samples; None: not recorded). Training on slp's synthetic corpus only makes it a demo model
    (``synthetic_content``: what of the corpus it learnt, e.g. "30 synthetic glosses")."""
    datasets = {name: int(n) for name, n in (datasets or {}).items() if int(n) > 0}
    common = ("Its inputs must be poses as the pose specification below describes (the same 79 points, normalised "
              "the same way, ideally from the same estimator); it was not evaluated for the accuracy it reaches on "
              "other signers, sign languages, camera set-ups or estimators than those of its training data, so "
              "measure that on your own data before relying on it, and do not use it to make decisions about "
              "people.")
    if not datasets:
        scope = (f"A research {model} for sign-language poses. Its training data was not recorded with this export: "
                 "it is unknown which signers and sign languages it has seen.")
    elif set(datasets) == {SYNTHETIC_DATASET}:
        learnt = synthetic_content or "synthetic signs and sentences"
        scope = (f"**A demo model.** This {model} was trained only on slp's procedural synthetic signer corpus "
                 f"(dataset `{SYNTHETIC_DATASET}`): {learnt} performed by generated skeletons, no recording of a "
                 "person. It shows slp's pipeline end to end; it has never seen a real signer and is not meant for "
                 "real signers' poses or any real use, and its metrics are those of synthetic data.")
    else:
        names = ", ".join(f"`{name}`" for name in datasets)
        scope = f"A research {model} for sign-language poses, trained on {names} (see *Training data*)."
        if SYNTHETIC_DATASET in datasets:
            scope += (f" {datasets[SYNTHETIC_DATASET]:,} of its {sum(datasets.values()):,} training samples are "
                      "slp's procedural synthetic signers, not recordings of people.")
    return "## Intended use and limitations\n\n" + scope + " " + common


def pretraining_section(figures: Mapping[str, Any], intro: str = "") -> str:
    """``## Pre-training run``: ``figures`` as :func:`pretrain.trainer.export_figures` records them (``steps``,
    ``total_steps``, ``world_size``, ``resumed_from`` and the ``final`` step's losses, τ and learning rate), after
    ``intro`` when given."""
    text = intro + f"Pre-trained for {int(figures['steps']):,} of {int(figures['total_steps']):,} optimiser steps"
    if figures.get("world_size"):
        text += f" on {int(figures['world_size'])} rank(s)"
    if figures.get("resumed_from"):
        text += f" (resumed from step {int(figures['resumed_from']):,})"
    text += "."
    final = dict(figures.get("final") or {})
    if not final:
        return "## Pre-training run\n\n" + text
    names = {"loss": "objective (L_PR + λ L_STC)", "loss_pr": "L_PR (masked pose reconstruction)",
             "loss_stc": "L_STC (sign-text contrastive)", "temperature": "τ", "lr": "learning rate"}
    rows = [(names.get(k, k), f"{v:.4g}") for k, v in final.items() if isinstance(v, (int, float))]
    return ("## Pre-training run\n\n" + text + " The global batch's values at the last step:\n\n"
            + _table(("value", "last step"), rows))


def config_section(config: Any, note: str = "") -> str:
    """``## Config``: ``config`` (a dataclass or a mapping) as YAML, after ``note`` when given."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return ("## Config\n\n" + (note + "\n\n" if note else "") + "```yaml\n"
            + yaml.safe_dump(values, sort_keys=False, allow_unicode=True).rstrip() + "\n```")


def pose_specification_section(pose_estimator: str, outputs: str = "Features") -> str:
    """``## Pose specification``: the estimator of the training poses (``""``: unknown), the 79 points with their
    COCO-WholeBody indices and the normalisation; ``outputs`` names what poses of another estimator change."""
    points = _table(("position", "part", "component", "COCO-WholeBody index", "name"),
                    [(i, PART_NAMES[POINT_PART[i]], COMPONENT_NAMES[PART_NAMES[POINT_PART[i]]],
                      int(WHOLEBODY_INDICES[i]), POINT_NAMES[i]) for i in range(NUM_POINTS)])
    estimator = f"`{pose_estimator}`" if pose_estimator else "unknown (not recorded at export)"
    return ("## Pose specification\n\n"
            f"Pose estimator of the training data: {estimator}. {outputs} of poses from another estimator may "
            "differ.\n\n"
            "Each frame holds 79 points `(x, y, confidence)` taken from COCO-WholeBody 133 (0-based indices below): "
            "the upper body, the jaw contour and nose tip, the inner lips and both hands. Missing points have "
            "confidence 0 and coordinates 0.\n\n"
            "Normalisation (`slp.pose.normalize.normalize_pose`, from pixel coordinates divided by the frame width "
            "and height): each hand by its own per-frame bounding box, square in pixels (the larger side), centred "
            "and scaled to [-1, 1]; every other point by the frame size, to [-1, 1]. Confidence passes through.\n\n"
            + points)


def training_data_section(training_data: Mapping[str, Any] | None, note: str = "") -> str:
    """``## Training data``: per-dataset counts and the manifest's sha256 (see :func:`training_data_from_manifest`;
    either key may be left out, None: nothing recorded), after ``note`` when given."""
    parts = [note] if note else []
    if training_data is None:
        parts.append("Not recorded: the export was not given the training manifest's counts and hash.")
        return "## Training data\n\n" + "\n\n".join(parts)
    unknown = set(training_data) - _TRAINING_DATA_KEYS
    if unknown:
        raise ValueError(f"training_data keys {sorted(unknown)} are not among {sorted(_TRAINING_DATA_KEYS)}")
    counts = dict(training_data.get("counts") or {})
    if counts:
        rows = [(name, f"{int(n):,}") for name, n in counts.items()]
        rows.append(("**total**", f"**{sum(int(n) for n in counts.values()):,}**"))
        parts.append(_table(("dataset", "samples"), rows))
    else:
        parts.append("Per-dataset counts: not recorded.")
    sha = training_data.get("manifest_sha256")
    parts.append(f"Curation manifest sha256: `{sha}`" if sha else "Curation manifest sha256: not recorded.")
    return "## Training data\n\n" + "\n\n".join(parts)


def metrics_table(columns: Mapping[str, Mapping[str, Any]]) -> str:
    """A table with one row per metric and one column per entry of ``columns`` (``{"value": metrics}``, or
    ``{"dev": ..., "test": ...}``): numbers and strings only (nested results are left out), floats to 4 digits,
    a metric a column lacks as ``-``."""
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    names = list(dict.fromkeys(name for metrics in columns.values() for name, value in metrics.items()
                               if isinstance(value, (int, float, str)) and not isinstance(value, bool)))
    return _table(("metric", *columns), [(name, *(cell(m[name]) if name in m else "-" for m in columns.values()))
                                         for name in names])


def render_card(title: str, description: str, usage: str, intended_use: str, config: Any, *, config_note: str = "",
                pose_estimator: str = "", training_data: Mapping[str, Any] | None = None, training_note: str = "",
                pretraining: str = "", metrics: str = "", outputs: str = "Features", metadata: str) -> str:
    """A model card: ``metadata`` (:func:`front_matter`), ``# title``, the ``description`` paragraph(s), the
    ``usage`` section (:func:`usage_section`), the ``intended_use`` section (:func:`intended_use_section`), the
    config (:func:`config_section`, with ``config_note``), the pose specification, the training data and, when
    given, the ``pretraining`` section (:func:`pretraining_section`) and the ``metrics`` section's body (a table,
    :func:`metrics_table`)."""
    sections = [metadata, f"# {title}", description, usage, intended_use, config_section(config, config_note),
                pose_specification_section(pose_estimator, outputs),
                training_data_section(training_data, training_note)]
    if pretraining:
        sections.append(pretraining)
    if metrics:
        sections.append("## Metrics\n\n" + metrics)
    return "\n\n".join(sections) + "\n"


def render_model_card(config: Any, *, num_parameters: int, output_dim: int, pose_estimator: str = "",
                      training_data: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
                      pretraining: Mapping[str, Any] | None = None) -> str:
    """The card's text for an encoder of ``config`` (a :class:`SignEncoderConfig`).

    ``pose_estimator``: the estimator (name and version) of the training poses, ``""`` when unknown;
    ``training_data``: ``{"counts": {dataset: samples}, "manifest_sha256": str}`` (either key may be left out;
    :func:`training_data_from_manifest` builds it), None when unknown; ``metrics``: name → value, None for none;
    ``pretraining``: the pre-training run's figures (:func:`pretraining_section`), None when unknown.
    """
    streams = [name for name, on in (("manual", config.use_manual), ("non-manual", config.use_non_manual)) if on]
    description = (
        "A sign-language pose encoder (`slp.models.sign_encoder.SignPoseEncoder`): a per-frame "
        f"{config.embedding.kind.upper()} embedding of the 79-point skeleton, then unshared transformer encoders "
        f"for the {' and '.join(streams)} points, concatenated per frame. Input: normalised poses `(B, T, 79, 3)` "
        f"and a valid-frame mask `(B, T)`; output: features `(B, T, {output_dim})`, 0 at padded frames. "
        f"{num_parameters:,} parameters.")
    frames = min(32, config.max_frames)
    usage = usage_section(f'''
import torch

from slp.models.sign_encoder import SignPoseEncoder
from slp.pose.normalize import normalize_pose

encoder = SignPoseEncoder.from_pretrained("{PLACEHOLDER}").eval()  # a Hub repository id or a local folder
# A clip of {frames} frames as slp's shards hold it, (T, 79, 3): x / width, y / height, confidence (random here;
# slp.pose.readers.read_pose and to_shard_pose make one from a pose file), normalised for a 640 × 480 frame.
clip = torch.rand({frames}, 79, 3)
pose = normalize_pose(clip, torch.tensor([640.0, 480.0]))[None]  # (1, T, 79, 3)
frame_mask = torch.ones(1, {frames}, dtype=torch.bool)  # True at real frames, False at padding
with torch.no_grad():
    features = encoder(pose, frame_mask)
print(features.shape)  # (1, {frames}, {output_dim})
''')
    return render_card("SignPoseEncoder", description, usage,
                       intended_use_section((training_data or {}).get("counts"), model="pose encoder"), config,
                       pose_estimator=pose_estimator, training_data=training_data,
                       pretraining=pretraining_section(pretraining) if pretraining else "",
                       metrics=metrics_table({"value": metrics}) if metrics else "",
                       metadata=front_matter("feature-extraction"))
