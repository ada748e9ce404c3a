"""Dataset adapters: one file per dataset, each registered by name (the ``adapter`` field of a curate config).

An adapter turns a dataset's original annotation files into :class:`~data_curation.records.CurationRecord`
objects (and :class:`~data_curation.records.AnnotationReject` entries for annotations it cannot use); the
pipeline reads, cuts and validates the poses. See :mod:`data_curation.adapters.base`.
"""

from __future__ import annotations

import importlib

from data_curation.adapters.base import DatasetAdapter

#: Registered name → module in this package defining the adapter class (imported on first use).
ADAPTER_MODULES: dict[str, str] = {
    "wlasl": "wlasl",
    "msasl": "msasl",
    "nmfs_csl": "nmfs_csl",
    "slr500": "slr500",
    "phoenix14": "phoenix14",
    "phoenix14t": "phoenix14t",
    "csl_daily": "csl_daily",
    "how2sign": "how2sign",
    "bobsl": "bobsl",
}


def get_adapter(name: str) -> type[DatasetAdapter]:
    if name not in ADAPTER_MODULES:
        raise ValueError(f"unknown dataset adapter {name!r}: expected one of {sorted(ADAPTER_MODULES)}")
    module = importlib.import_module(f"{__name__}.{ADAPTER_MODULES[name]}")
    return module.ADAPTER


__all__ = ["ADAPTER_MODULES", "DatasetAdapter", "get_adapter"]
