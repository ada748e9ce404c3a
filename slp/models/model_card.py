"""The model card (``README.md``) :meth:`SignPoseEncoder.save_pretrained` writes beside the weights.

Hugging Face YAML metadata first, then what a user of the encoder must match to get meaningful features: the
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


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _training_data_section(training_data: Mapping[str, Any] | None) -> str:
    if training_data is None:
        return "Not recorded: the export was not given the training manifest's counts and hash."
    unknown = set(training_data) - _TRAINING_DATA_KEYS
    if unknown:
        raise ValueError(f"training_data keys {sorted(unknown)} are not among {sorted(_TRAINING_DATA_KEYS)}")
    counts = dict(training_data.get("counts") or {})
    parts = []
    if counts:
        rows = [(name, f"{int(n):,}") for name, n in counts.items()]
        rows.append(("**total**", f"**{sum(int(n) for n in counts.values()):,}**"))
        parts.append(_table(("dataset", "samples"), rows))
    else:
        parts.append("Per-dataset counts: not recorded.")
    sha = training_data.get("manifest_sha256")
    parts.append(f"Curation manifest sha256: `{sha}`" if sha else "Curation manifest sha256: not recorded.")
    return "\n\n".join(parts)


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return _table(("metric", "value"), [(name, cell(value)) for name, value in metrics.items()])


def render_model_card(config: Any, *, num_parameters: int, output_dim: int, pose_estimator: str = "",
                      training_data: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None) -> str:
    """The card's text for an encoder of ``config`` (a :class:`SignEncoderConfig`).

    ``pose_estimator``: the estimator (name and version) of the training poses, ``""`` when unknown;
    ``training_data``: ``{"counts": {dataset: samples}, "manifest_sha256": str}`` (either key may be left out;
    :func:`training_data_from_manifest` builds it), None when unknown; ``metrics``: name → value, None for none.
    """
    metadata = {"library_name": "slp", "license": LICENSE, "pipeline_tag": "feature-extraction", "tags": list(TAGS)}
    config_yaml = yaml.safe_dump(dataclasses.asdict(config), sort_keys=False).rstrip()
    streams = [name for name, on in (("manual", config.use_manual), ("non-manual", config.use_non_manual)) if on]
    points = _table(("position", "part", "component", "COCO-WholeBody index", "name"),
                    [(i, PART_NAMES[POINT_PART[i]], COMPONENT_NAMES[PART_NAMES[POINT_PART[i]]],
                      int(WHOLEBODY_INDICES[i]), POINT_NAMES[i]) for i in range(NUM_POINTS)])
    estimator = f"`{pose_estimator}`" if pose_estimator else "unknown (not recorded at export)"
    sections = [
        "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---",
        "# SignPoseEncoder",
        "A sign-language pose encoder (`slp.models.sign_encoder.SignPoseEncoder`): a per-frame "
        f"{config.embedding.kind.upper()} embedding of the 79-point skeleton, then unshared transformer encoders "
        f"for the {' and '.join(streams)} points, concatenated per frame. Input: normalised poses `(B, T, 79, 3)` "
        f"and a valid-frame mask `(B, T)`; output: features `(B, T, {output_dim})`, 0 at padded frames. "
        f"{num_parameters:,} parameters.",
        "```python\nfrom slp.models.sign_encoder import SignPoseEncoder\n\n"
        'encoder = SignPoseEncoder.from_pretrained("ORG/NAME")  # a Hub repository id or a local folder\n```',
        "## Config\n\n```yaml\n" + config_yaml + "\n```",
        "## Pose specification\n\n"
        f"Pose estimator of the training data: {estimator}. Features of poses from another estimator may differ.\n\n"
        "Each frame holds 79 points `(x, y, confidence)` taken from COCO-WholeBody 133 (0-based indices below): "
        "the upper body, the jaw contour and nose tip, the inner lips and both hands. Missing points have "
        "confidence 0 and coordinates 0.\n\n"
        "Normalisation (`slp.pose.normalize.normalize_pose`, from pixel coordinates divided by the frame width and "
        "height): each hand by its own per-frame bounding box, square in pixels (the larger side), centred and "
        "scaled to [-1, 1]; every other point by the frame size, to [-1, 1]. Confidence passes through.\n\n"
        + points,
        "## Training data\n\n" + _training_data_section(training_data),
    ]
    if metrics:
        sections.append("## Metrics\n\n" + _metrics_section(metrics))
    return "\n\n".join(sections) + "\n"
