"""What the README shows runs as written: its Python snippets run (in a folder holding what they read, as `make demo`
leaves it), and every command of its bash blocks exists (console scripts, scripts, modules, Makefile targets) and
takes the options it is given there; every config it names is in configs/. The distribution's name is the one
pyproject.toml declares, in every install hint."""

from __future__ import annotations

import argparse
import glob
import importlib
import os
import re
import shlex

import pytest

from slp import DISTRIBUTION
from tests.conftest import REPO_ROOT
from tests.markdown import fenced_blocks, run_python_blocks

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
#: Commands of the bash blocks that are not this project's (installs of third-party packages).
OTHERS = {"pip"}


def console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: command → module."""
    section = PYPROJECT.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    return {name: target.split(":")[0] for name, target in re.findall(r'^([\w-]+) = "([^"]+)"', section, re.M)}


MAKEFILE = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", MAKEFILE, re.M))


def bash_commands() -> list[list[str]]:
    """Each command line of the README's bash blocks as words: continuation lines joined, comments dropped, leading
    ``VAR=value`` assignments left out."""
    commands = []
    for block in fenced_blocks(README, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if words:
                commands.append(words)
    return commands


def options_of(module: str, words: list[str]) -> tuple[str, set[str]]:
    """The command (with its subcommand) that ``words`` (the arguments after the program) run, and the options its
    parser takes (those ``--help`` lists, not words of its description); ``module`` has ``build_parser()``."""
    parser = importlib.import_module(module).build_parser()
    name = parser.prog
    subcommands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if subcommands is not None:
        sub = next(w for w in words if not w.startswith("-"))
        assert sub in subcommands.choices, f"{name} has no subcommand {sub!r}"
        parser, name = subcommands.choices[sub], f"{name} {sub}"
    return name, {option for action in parser._actions for option in action.option_strings}


def check_options(module: str, words: list[str], line: list[str]) -> None:
    name, accepted = options_of(module, words)
    given = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    assert given <= accepted, f"README: `{shlex.join(line)}`: {name} takes no {sorted(given - accepted)}"


def test_every_readme_command_exists_and_takes_the_options_it_is_given():
    scripts, targets = console_scripts(), make_targets()
    modules = set(scripts.values())
    seen = set()
    for line in bash_commands():
        program, words = line[0], line[1:]
        seen.add(program)
        if program in scripts:
            check_options(scripts[program], words, line)
        elif program == "make":
            assert set(words) <= targets, f"README: `{shlex.join(line)}`: no such Makefile target"
        elif program == "source":  # the venv `make` creates
            venv = re.search(r"^VENV \?= (\S+)$", MAKEFILE, re.M).group(1)
            assert words == [f"{venv}/bin/activate"], f"README: `{shlex.join(line)}`: make creates {venv}"
        elif program in ("python", "deepspeed"):  # a script of the repository (deepspeed: after its own options)
            script = next((w for w in words if w.endswith(".py")), None)
            assert script is not None and (REPO_ROOT / script).is_file(), f"README: `{shlex.join(line)}`"
        elif program == "accelerate":  # accelerate launch ... -m MODULE args
            module = words[words.index("-m") + 1]
            assert module in modules, f"README: `{shlex.join(line)}`: {module} is no slp command"
            check_options(module, words[words.index("-m") + 2:], line)
        else:
            assert program in OTHERS, f"README: `{shlex.join(line)}`: unknown command {program!r}"
    assert set(scripts) <= seen  # every console script is shown


def test_every_config_the_readme_names_exists():
    named = set(re.findall(r"configs/[\w/*.{},-]*?\.yaml", README))
    assert named
    missing = [path for path in sorted(named) if not glob.glob(str(REPO_ROOT / path))]
    assert not missing, f"README names configs that do not exist: {missing}"


def test_the_distribution_name_is_pyprojects_in_every_install_hint():
    declared = re.search(r'^\[project\]\n(?:#.*\n)*name = "([^"]+)"', PYPROJECT, re.M).group(1)
    assert declared == DISTRIBUTION and f"pip install {DISTRIBUTION}" in README
    # `slp` on PyPI is another project: no hint installs it, nor its extras.
    stale = re.compile(r"pip install ['\"]?slp(?![\w-])|(?<![\w-])slp\[")
    sources = [REPO_ROOT / "README.md", REPO_ROOT / "Makefile",
               *(p for folder in ("slp", "data_curation", "pretrain", "finetune", "scripts", "benchmarks")
                 for p in (REPO_ROOT / folder).rglob("*.py"))]
    hits = [f"{p.relative_to(REPO_ROOT)}: {m.group(0)}" for p in sources for m in stale.finditer(p.read_text())]
    assert not hits, hits


@pytest.fixture
def demo_outputs(tmp_path):
    """A folder holding, in small, what the README's snippets read after `make demo`: the synthetic corpus's shards
    and an ISLR head folder."""
    from slp.synthetic import SyntheticConfig, write_synthetic_corpus
    from tests.test_hub_export import _synthetic_split, head_folder_of_untrained_head

    write_synthetic_corpus(tmp_path / "demo_out" / "synthetic",
                           SyntheticConfig(num_glosses=3, num_signers=3, dev_signers=1, test_signers=1, repetitions=1,
                                           sentences_per_signer=1))
    isolated, _ = _synthetic_split()
    head_folder_of_untrained_head("islr", "facebook/mbart-large-cc25", isolated,
                                  tmp_path / "demo_out" / "finetune_islr" / "model")
    return tmp_path


def test_readme_python_snippets_run_as_written(demo_outputs, monkeypatch):
    snippets = fenced_blocks(README, "python")
    assert len(snippets) >= 2
    monkeypatch.chdir(demo_outputs)
    done = run_python_blocks(snippets, demo_outputs, {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ReadStats(" in done.stdout and "islr ['APPLE'" in done.stdout
