"""Markdown code blocks, for the tests that run what the README and the model cards show (tests/test_readme.py,
tests/test_hub_export.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def fenced_blocks(markdown: str, language: str) -> list[str]:
    """The bodies of the ```language fenced blocks of ``markdown``, in order."""
    return re.findall(rf"^```{re.escape(language)}\n(.*?)^```$", markdown, flags=re.S | re.M)


#: Runs each file given as an argument as a script of its own (a fresh namespace), in order.
_RUN_SCRIPTS = """
import runpy, sys
for path in sys.argv[1:]:
    print(f"== {path}", flush=True)
    runpy.run_path(path, run_name="__main__")
"""


def run_python_blocks(blocks: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
                      ) -> subprocess.CompletedProcess:
    """Run each code block as written, one after the other, in one Python process whose working directory is
    ``cwd`` (a process start costs seconds of imports); the blocks are written to files in ``cwd``."""
    paths = []
    for i, block in enumerate(blocks):
        path = cwd / f"snippet_{i}.py"
        path.write_text(block, encoding="utf-8")
        paths.append(str(path))
    return subprocess.run([sys.executable, "-c", _RUN_SCRIPTS, *paths], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
