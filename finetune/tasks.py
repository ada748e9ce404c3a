"""The fine-tuning tasks: one head module each, registered by name with :func:`register_task`.

A head module decorates its ``build_head`` with ``@register_task("name")``; the module itself is the task (its
``keep``, ``build_head``, ``MAIN_METRIC``, ``HIGHER_IS_BETTER`` and ``results_table``, see :mod:`finetune.trainer`).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

from slp.cli_errors import UserError

TASKS: dict[str, ModuleType] = {}
F = TypeVar("F", bound=Callable)


def register_task(name: str) -> Callable[[F], F]:
    """Decorator of a head module's ``build_head``: that module is task ``name``."""

    def register(build_head: F) -> F:
        TASKS[name] = sys.modules[build_head.__module__]
        return build_head

    return register


def registered_tasks() -> dict[str, ModuleType]:
    """Every task by name: importing the package's modules runs their ``@register_task`` decorators."""
    package = importlib.import_module("finetune")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"finetune.{module.name}")
    return dict(sorted(TASKS.items()))


def task_module(name: str) -> ModuleType:
    tasks = registered_tasks()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}: registered tasks are {', '.join(tasks)}")
    return tasks[name]
