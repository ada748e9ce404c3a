"""The fine-tuning tasks: one head module each, registered by name with :func:`register_task`.

A head module decorates its ``build_head`` with ``@register_task("name")``; the module itself is the task (its
``keep``, ``build_head``, ``MAIN_METRIC``, ``HIGHER_IS_BETTER`` and ``results_table``, see :mod:`finetune.trainer`).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
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


#: How a head module registers its task (see :func:`register_task`), as written in its source.
_REGISTRATION = re.compile(r"""^@register_task\(\s*["']([^"']+)["']\s*\)""", re.MULTILINE)


def task_names() -> list[str]:
    """The registered tasks' names, sorted, read from the ``@register_task("name")`` lines of the package's modules
    without importing them (they load torch and transformers): what a command line lists and checks before it
    loads anything. ``tests/test_cli_first_hour.py`` checks that they are :func:`registered_tasks`' names."""
    package = importlib.util.find_spec("finetune")
    names = set()
    for module in pkgutil.iter_modules(package.submodule_search_locations):
        source = importlib.util.find_spec(f"finetune.{module.name}").origin
        with open(source, encoding="utf-8") as f:
            names.update(_REGISTRATION.findall(f.read()))
    return sorted(names)


def task_module(name: str) -> ModuleType:
    tasks = registered_tasks()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}: registered tasks are {', '.join(tasks)}")
    return tasks[name]
