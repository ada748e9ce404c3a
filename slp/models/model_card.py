"""Model cards (``README.md``): the one :meth:`SignPoseEncoder.save_pretrained` writes beside the weights
(:func:`render_model_card`), and the blocks every slp card is made of (:func:`render_card`; fine-tuned heads'
cards: :mod:`finetune.export`).

Hugging Face YAML metadata first, then what a user of the model must match to get meaningful outputs: the
architecture and its config, the pose specification (the 79 points by COCO-WholeBody index, the normalisation,
the estimator the model was trained on), the training data (per-dataset counts and the manifest's sha256) and,
when given, a metrics table.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from slp.pose.export import COMPONENT_NAMES, POINT_NAMES
from slp.pose.layout import NUM_POINTS, PART_NAMES, POINT_PART, WHOLEBODY_INDICES

LICENSE = "apache-2.0"
TAGS = ("sign-language", "pose", "keypoints", "coco-wholebody", "safetensors")
_TRAINING_DATA_KEYS = {"counts", "manifest_sha256"}


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
    metadata: dict[str, Any] = {"library_name": "slp", "license": LICENSE}
    if pipeline_tag:
        metadata["pipeline_tag"] = pipeline_tag
    metadata["tags"] = [*TAGS, *(t for t in tags if t not in TAGS)]
    metadata.update(extra)
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---"


def config_section(config: Any) -> str:
    """``## Config``: the dataclass ``config`` as YAML."""
    return "## Config\n\n```yaml\n" + yaml.safe_dump(dataclasses.asdict(config), sort_keys=False,
                                                      allow_unicode=True).rstrip() + "\n```"


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


def render_card(title: str, description: str, usage: str, config: Any, *, pose_estimator: str = "",
                training_data: Mapping[str, Any] | None = None, training_note: str = "",
                metrics: str = "", outputs: str = "Features", metadata: str) -> str:
    """A model card: ``metadata`` (:func:`front_matter`), ``# title``, the ``description`` paragraph(s), the
    ``usage`` code, the config, the pose specification, the training data and, when given, the ``metrics``
    section's body (a table, :func:`metrics_table`)."""
    sections = [metadata, f"# {title}", description, usage, config_section(config),
                pose_specification_section(pose_estimator, outputs),
                training_data_section(training_data, training_note)]
    if metrics:
        sections.append("## Metrics\n\n" + metrics)
    return "\n\n".join(sections) + "\n"


def render_model_card(config: Any, *, num_parameters: int, output_dim: int, pose_estimator: str = "",
                      training_data: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None) -> str:
    """The card's text for an encoder of ``config`` (a :class:`SignEncoderConfig`).

    ``pose_estimator``: the estimator (name and version) of the training poses, ``""`` when unknown;
    ``training_data``: ``{"counts": {dataset: samples}, "manifest_sha256": str}`` (either key may be left out;
    :func:`training_data_from_manifest` builds it), None when unknown; ``metrics``: name → value, None for none.
    """
    streams = [name for name, on in (("manual", config.use_manual), ("non-manual", config.use_non_manual)) if on]
    description = (
        "A sign-language pose encoder (`slp.models.sign_encoder.SignPoseEncoder`): a per-frame "
        f"{config.embedding.kind.upper()} embedding of the 79-point skeleton, then unshared transformer encoders "
        f"for the {' and '.join(streams)} points, concatenated per frame. Input: normalised poses `(B, T, 79, 3)` "
        f"and a valid-frame mask `(B, T)`; output: features `(B, T, {output_dim})`, 0 at padded frames. "
        f"{num_parameters:,} parameters.")
    usage = ("```python\nfrom slp.models.sign_encoder import SignPoseEncoder\n\n"
             'encoder = SignPoseEncoder.from_pretrained("ORG/NAME")  # a Hub repository id or a local folder\n```')
    return render_card("SignPoseEncoder", description, usage, config, pose_estimator=pose_estimator,
                       training_data=training_data, metrics=metrics_table({"value": metrics}) if metrics else "",
                       metadata=front_matter("feature-extraction"))
