"""Dataset adapters: one file per dataset, each class registered by name with
:func:`~data_curation.adapters.base.register_adapter` (the ``adapter`` field of a curate config).

An adapter turns a dataset's original annotation files into :class:`~data_curation.records.CurationRecord`
objects (and :class:`~data_curation.records.AnnotationReject` entries for annotations it cannot use); the
pipeline reads, cuts and validates the poses. See :mod:`data_curation.adapters.base`.
"""

from __future__ import annotations

import importlib
import pkgutil

from data_curation.adapters.base import ADAPTERS, DatasetAdapter, register_adapter
from slp.cli_errors import UserError


def registered_adapters() -> dict[str, type[DatasetAdapter]]:
    """Every adapter by name: importing this package's modules runs their ``@register_adapter`` decorators."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(ADAPTERS.items()))


def get_adapter(name: str) -> type[DatasetAdapter]:
    adapters = registered_adapters()
    if name not in adapters:
        raise UserError(f"unknown dataset adapter {name!r}; registered: {', '.join(adapters)}")
    return adapters[name]


__all__ = ["DatasetAdapter", "get_adapter", "register_adapter", "registered_adapters"]
