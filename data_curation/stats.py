"""Statistics of a curated build from its manifest: the paper's Table II and the duration histogram of Fig. 3.

Table II gives, per sign language, the number of samples, of sentences and the kind of source videos. Here a
"sentence" is a distinct paired text (an ISLR gloss template counts once per gloss, as in the paper's CSL
column where 268k samples hold 152k sentences), and sources list both the kind (lab / web / TV: each adapter's
``source_kind``) and the dataset names found in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slp.data.schema import SIGN_LANGUAGES
from slp.data.shards import write_summary
from slp.synthetic.corpus import DATASET as SYNTHETIC

#: The manifest columns the statistics read (and "adapter" where the manifest has it).
MANIFEST_COLUMNS = ["dataset", "sign_language", "frames", "fps", "paired", "text"]


def source_kinds() -> dict[str, str]:
    """Adapter name → kind of recording behind its source (Table II's "sources" row: the adapter's
    ``source_kind``); the procedural synthetic corpus (:mod:`slp.synthetic`), which no adapter reads, is its own
    kind. A name missing here is of kind "other"."""
    from data_curation.adapters import registered_adapters

    return {name: cls.source_kind for name, cls in registered_adapters().items()} | {SYNTHETIC: SYNTHETIC}


def manifest_stats(manifest: str | Path) -> dict[str, Any]:
    """Table II per sign language (and in total) and clip duration percentiles, from ``manifest.parquet``."""
    # A curated manifest names each sample's adapter (entries may be renamed); another one only its dataset.
    columns = MANIFEST_COLUMNS + (["adapter"] if "adapter" in pq.read_schema(manifest).names else [])
    table = pq.read_table(manifest, columns=columns)
    adapter_column = table["adapter" if "adapter" in columns else "dataset"]
    seconds = pc.divide(pc.cast(table["frames"], "float64"), pc.cast(table["fps"], "float64"))
    found = sorted(set(table["sign_language"].to_pylist()))
    languages = [lang for lang in SIGN_LANGUAGES if lang in found] + [lang for lang in found
                                                                      if lang not in SIGN_LANGUAGES]
    kinds = source_kinds()
    rows: dict[str, dict[str, Any]] = {}
    for language in [*languages, "total"]:
        if language == "total":
            part, part_seconds, part_adapters = table, seconds, adapter_column
        else:
            mask = pc.equal(table["sign_language"], language)
            part, part_seconds, part_adapters = table.filter(mask), seconds.filter(mask), adapter_column.filter(mask)
        paired = part.filter(part["paired"])
        datasets = sorted(set(part["dataset"].to_pylist()))
        rows[language] = {
            "samples": part.num_rows,
            "paired": paired.num_rows,
            "unpaired": part.num_rows - paired.num_rows,
            "sentences": pc.count_distinct(paired["text"]).as_py() if paired.num_rows else 0,
            "hours": round(float(pc.sum(part_seconds).as_py() or 0.0) / 3600, 4),
            "sources": sorted({kinds.get(a, "other") for a in set(part_adapters.to_pylist())}),
            "datasets": datasets,
        }
    durations = seconds.to_numpy(zero_copy_only=False)
    frames = table["frames"].to_numpy()
    percentiles = [0, 5, 25, 50, 75, 95, 100]
    return {
        "table_ii": rows,
        "durations": {
            "seconds_percentiles": {str(p): round(float(v), 3) for p, v in
                                    zip(percentiles, np.percentile(durations, percentiles) if len(durations) else [])},
            "frames_percentiles": {str(p): int(v) for p, v in
                                   zip(percentiles, np.percentile(frames, percentiles) if len(frames) else [])},
            "fraction_25_to_100_frames": round(float(((frames >= 25) & (frames <= 100)).mean()), 4)
            if len(frames) else 0.0,
        },
    }


def format_table(stats: dict[str, Any]) -> str:
    """Table II as aligned text: one column per sign language, plus the total."""
    rows = stats["table_ii"]
    columns = list(rows)
    lines = [
        ("", columns),
        ("#samples", [f"{rows[c]['samples']:,}" for c in columns]),
        ("  paired", [f"{rows[c]['paired']:,}" for c in columns]),
        ("  unpaired", [f"{rows[c]['unpaired']:,}" for c in columns]),
        ("#sentences", [f"{rows[c]['sentences']:,}" for c in columns]),
        ("hours", [f"{rows[c]['hours']:.2f}" for c in columns]),
        ("sources", [", ".join(rows[c]["sources"]) for c in columns]),
        ("datasets", [", ".join(rows[c]["datasets"]) for c in columns]),
    ]
    label_width = max(len(label) for label, _ in lines)
    widths = [max(len(values[i]) for _, values in lines) for i in range(len(columns))]
    return "\n".join(
        f"{label:<{label_width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(values, widths)) for label, values in lines
    )


def plot_duration_histogram(manifest: str | Path, out_png: str | Path, bins: int = 50) -> Path:
    """Fig. 3: histogram of clip durations in seconds (frames / fps), one series per sign language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pq.read_table(manifest, columns=["sign_language", "frames", "fps"])
    seconds = (table["frames"].to_numpy().astype(np.float64) / table["fps"].to_numpy().astype(np.float64))
    languages = np.asarray(table["sign_language"].to_pylist(), dtype=object)
    edges = np.histogram_bin_edges(seconds, bins=bins) if len(seconds) else np.linspace(0, 1, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    names = sorted(set(languages.tolist()))
    ax.hist([seconds[languages == name] for name in names], bins=edges, stacked=True, label=names)
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("samples")
    ax.set_title(f"Distribution over sample durations ({len(seconds):,} samples)")
    if names:
        ax.legend(title="sign language")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, metadata={"Software": None})
    plt.close(fig)
    return out_png


def write_stats(manifest: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """``stats.json`` and ``duration_histogram.png`` in ``out_dir``; returns the statistics."""
    out_dir = Path(out_dir)
    stats = manifest_stats(manifest)
    write_summary(out_dir / "stats.json", stats)
    plot_duration_histogram(manifest, out_dir / "duration_histogram.png")
    return stats
