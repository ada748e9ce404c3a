"""What a command prints when something goes wrong: one rule for every ``slp`` command line.

- A *user error* — a file the user named is missing, is a folder, is not the format it should be; a config key
  or an option holds a value outside its type or choices — is ONE line on stderr, ``<prog>: error: <message>``,
  naming the file or option and what is wrong, and exit status 2. Nothing in the code is wrong, so a traceback
  would only hide the line that matters.
- Problems of single records in a long run (one corrupt pose among a million) are not errors of the run: the
  command logs each one (the curation rejects log) and prints one line counting them.
- Anything else is a bug and keeps its traceback.

A command raises :class:`UserError` where it detects a user error and wraps its entry point with :func:`run_cli`;
:class:`ArgumentParser` reports argument errors the same way, and :func:`load_user_config` is
:func:`slp.config.load_config` with the mistakes of a config file turned into :class:`UserError`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from slp.config import ConfigError, load_config

T = TypeVar("T")


class UserError(Exception):
    """A mistake in what the user gave; the message names the file or option and says what is wrong."""


def run_cli(main: Callable[[list[str] | None], T], argv: list[str] | None = None, *, prog: str = "") -> T:
    """``main(argv)``; a :class:`UserError` becomes ``<prog>: error: <message>`` (one line) on stderr and exit
    status 2 (argparse's status for usage errors). ``prog`` defaults to the name the program was started by."""
    try:
        return main(argv)
    except UserError as exc:
        message = " ".join(str(exc).split("\n"))  # one line, whatever the message holds
        print(f"{prog or Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are :class:`UserError` (one line, pointing at ``--help``) instead of
    argparse's usage block; subparsers made from it inherit that."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file ("no such file", "is a directory, not a file"), None when it can."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a directory, not a file"
    return "no such file" if not path.exists() else "is not a regular file"


def folder_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as a folder ("no such folder", "is a file, not a folder"), None when it can."""
    path = Path(path)
    if path.is_dir():
        return None
    return "no such folder" if not path.exists() else "is a file, not a folder"


def output_folder_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be an output folder, None when it can: a missing one is created in the nearest folder
    above it that exists, which must be a folder this user may write. The reason names that path
    ("<path>: is a file, not a folder")."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"{existing}: is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing}: permission denied (the folder may not be written)"
    return None


def read_user_text(path: str | Path, owner: str = "") -> str:
    """The text of a file the user named (UTF-8, a BOM dropped); bytes that are not UTF-8 are a
    :class:`UserError` naming the file (after ``owner: `` when given) and where the first bad byte is, and so is a
    file that is missing, a folder or unreadable."""
    prefix = f"{owner}: " if owner else ""
    if problem := file_problem(path):
        raise UserError(f"{prefix}{path}: {problem}")
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc, owner) from None
    except OSError as exc:  # permissions, I/O errors
        raise UserError(f"{prefix}{path}: {exc.strerror or exc}") from None


def read_user_json(path: str | Path, owner: str = "") -> Any:
    """The JSON value of a file the user named or gave (:func:`read_user_text`'s checks, then the JSON's): a file
    that is not JSON, a truncated copy say, is a :class:`UserError` naming it with the line and column where the
    JSON stops making sense."""
    text = read_user_text(path, owner)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{f'{owner}: ' if owner else ''}{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}; "
                        f"truncated?)") from None


def _not_utf8(path: str | Path, exc: UnicodeDecodeError, owner: str = "") -> UserError:
    return UserError(f"{f'{owner}: ' if owner else ''}{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")


def load_user_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """:func:`slp.config.load_config`, raising :class:`UserError` for a missing or unreadable file, a YAML
    syntax error (with its line and column), a tag YAML may not construct (``!!python/…``: configs are loaded
    with ``yaml.safe_load``, which never runs code) and a key or value that does not match ``cls``."""
    if path is not None and (problem := file_problem(path)):
        raise UserError(f"{path}: {problem}")
    try:
        return load_config(cls, path, overrides)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise UserError(f"{where}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        raise UserError(str(exc)) from None
