"""A new user's first hour with slp-finetune and slp-predict: every mistake in what they give — an option, the
config or an override, the --pretrained export, a head folder's files, --texts, an input — is ONE line naming it,
exit status 2, printed before any model code loads when no model code is needed to see it; a batch of predictions
with failed inputs says so per input, writes its summary, and exits 1. --help is plain text and imports no torch."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from finetune import checkpoint, cli
from finetune.cli import main as finetune
from finetune.config import FinetuneConfig
from finetune.export import load_finetuned, vocabulary_mismatch
from finetune.predict_cli import POSE_FILE_FORMATS
from finetune.predict_cli import main as predict
from finetune.tasks import registered_tasks, task_names
from slp.cli_errors import UserError, load_user_config, read_user_json, read_user_text
from slp.config import ConfigError, load_config
from slp.data.shards import iter_samples
from slp.models import sign_encoder
from slp.models.sign_encoder import SignPoseEncoder
from slp.pose.export import write_pose_79
from slp.pose.readers import POSE_FORMATS
from slp.synthetic import SyntheticConfig, write_synthetic_corpus
from tests.cli import one_line_error
from tests.test_hub_export import head_folder_of_untrained_head

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/finetune/islr/synthetic.yaml"
ENCODER_EXPECTED = "expected a SignPoseEncoder.save_pretrained folder: config.json, model.safetensors"
SHARDS_HINT = "give the curated shards with the override data.shards=[DIR/*.tar]"


@dataclass
class Made:
    root: Path
    corpus: Path  # its shards are corpus / "shards" / *.tar
    head: Path  # an ISLR head folder of the corpus' vocabulary
    encoder: Path  # a SignPoseEncoder export
    pose: Path  # a 79-point .pose clip of the corpus

    @property
    def shards(self) -> str:
        return f"data.shards=[{self.corpus / 'shards'}/*.tar]"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Made:
    """A small synthetic corpus, an untrained ISLR head folder of its vocabulary (its class names are the train
    split's glosses), an encoder export and one clip as a .pose file."""

    root = tmp_path_factory.mktemp("first_hour")
    write_synthetic_corpus(root / "corpus", SyntheticConfig(num_glosses=4, num_signers=5, repetitions=1,
                                                            sentences_per_signer=0))
    samples = list(iter_samples(sorted((root / "corpus" / "shards").glob("*.tar"))))
    train = [s for s in samples if s.meta.split == "train"]
    head, _ = head_folder_of_untrained_head("islr", "unused", train, root / "head")
    encoder = SignPoseEncoder(load_config(FinetuneConfig, CONFIG).encoder).save_pretrained(root / "encoder")
    clip = samples[0]
    pose = write_pose_79(root / "clip.pose", clip.pose, clip.meta.fps, clip.meta.width, clip.meta.height)
    return Made(root, root / "corpus", head, Path(encoder), pose)


def _copy(folder: Path, to: Path) -> Path:
    return Path(shutil.copytree(folder, to))


def _json_error(text: str) -> json.JSONDecodeError:
    with pytest.raises(json.JSONDecodeError) as error:
        json.loads(text)
    return error.value


# --- config overrides ------------------------------------------------------------------------------------------


@dataclass
class Section:
    name: str = "x"
    comment: str | None = None
    count: int = 0


@dataclass
class Config:
    mixed_precision: Literal["no", "bf16"] = "bf16"
    output: str = "runs"
    flag: bool = True
    seed: int = 0
    section: Section = field(default_factory=Section)
    named: dict[str, Section] = field(default_factory=dict)


@pytest.mark.parametrize("word", ["no", "yes", "on", "off", "true", "false", "null", "007", "12:30", "1e3",
                                  "a #b"])
def test_a_text_field_takes_the_word_as_written(word):
    cfg = load_config(Config, None, [f"output={word}", f"section.name={word}", f"named.a.name={word}"])
    assert cfg.output == cfg.section.name == cfg.named["a"].name == word


def test_mixed_precision_no_is_the_word_no():
    assert load_config(Config, None, ["mixed_precision=no"]).mixed_precision == "no"
    assert load_config(FinetuneConfig, CONFIG, ["mixed_precision=no"]).mixed_precision == "no"


def test_other_fields_still_read_yaml():
    cfg = load_config(Config, None, ["flag=no", "seed=007", "section.count=12", "section.comment=null",
                                     "output='quoted'", "section.name=!!str off"])
    assert (cfg.flag, cfg.seed, cfg.section.count, cfg.section.comment) == (False, 7, 12, None)
    assert (cfg.output, cfg.section.name) == ("quoted", "off")
    assert load_config(Config, None, ["section.comment=no"]).section.comment == "no"
    with pytest.raises(ConfigError) as error:
        load_config(Config, None, ["mixed_precision=fp16"])
    assert str(error.value) == "Config.mixed_precision: expected one of ('no', 'bf16'), got 'fp16'"


def test_a_file_that_cannot_be_read_is_one_line(tmp_path, monkeypatch):

    path = _write(tmp_path / "s.txt", "a\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    for read in (read_user_text, read_user_json):
        with pytest.raises(UserError) as error:
            read(path, "--texts")
        assert str(error.value) == f"--texts: {path}: Permission denied"


def test_a_bare_no_in_a_config_file_says_to_quote_it(tmp_path):
    (tmp_path / "c.yaml").write_text("mixed_precision: no\n")
    with pytest.raises(UserError) as error:
        load_user_config(Config, tmp_path / "c.yaml")
    assert str(error.value) == (f"{tmp_path / 'c.yaml'}.mixed_precision: expected one of ('no', 'bf16'), got "
                                f"False (YAML reads a bare yes / no / on / off / true / false / null as that: quote "
                                f"the word)")


@pytest.mark.parametrize("override", ["seed=!!python/object:os.system",
                                      "output=!!python/object/apply:os.system ['touch PWNED']"])
def test_an_override_with_a_yaml_tag_is_named_not_the_config_file(override, tmp_path):
    (tmp_path / "c.yaml").write_text("seed: 1\noutput: runs\n")
    with pytest.raises(UserError) as error:
        load_user_config(Config, tmp_path / "c.yaml", [override])
    tag = override.split("=", 1)[1].split()[0][2:]
    assert str(error.value) == (f"override {override!r}: invalid YAML value (could not determine a constructor for "
                                f"the tag 'tag:yaml.org,2002:{tag}')")
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


# --- help, and mistakes reported before model code loads ---------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("module", ["finetune.cli", "finetune.predict_cli"])
def test_importing_a_cli_module_imports_no_torch(module):
    run = _run_python(f"import {module}, sys; print('torch' in sys.modules)")
    assert run.returncode == 0 and run.stdout == "False\n", run.stderr


@pytest.mark.parametrize("module", ["finetune.cli", "finetune.predict_cli"])
def test_help_is_plain_text_and_loads_no_model_code(module):
    run = _run_python(f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
                      f"    print(e.code, 'torch' in sys.modules, file=sys.stderr)")
    assert run.stderr == "0 False\n"
    text = run.stdout
    for markup in ("``", ":mod:", ":class:", ":func:", ":meth:"):
        assert markup not in text
    description = text.split("\n\n", 1)[1].split("positional arguments:")[0]
    for line in description.splitlines():  # no run of spaces inside a line (a docstring's \-newline joined it)
        assert "   " not in line.strip(), line
    if module == "finetune.cli":
        assert "--allow-vocabulary-mismatch" in text and "data.shards=" in text


def test_argument_mistakes_are_reported_before_model_code_loads(tmp_path):
    """Each mistake: exit 2, and torch never imported."""
    head = tmp_path / "head"
    head.mkdir()
    cases = {
        "finetune.cli": [["--task", "nope", "--config", CONFIG], ["--task", "islr", "--config", str(tmp_path / "x")],
                         ["--task", "islr", "--config", CONFIG, "--pretrained", str(tmp_path / "none")],
                         ["--task", "islr", "--config", CONFIG, "--eval-only"],
                         ["--task", "islr", "--config", CONFIG, "--checkpoint", str(head)]],
        "finetune.predict_cli": [["--model", str(head), str(tmp_path / "none.pose")],
                                 ["--model", str(head), CONFIG, "--batch-size", "0"],
                                 ["--model", str(head), CONFIG, "--texts", str(tmp_path / "none.txt")],
                                 ["--model", str(head), CONFIG, "--out", str(tmp_path)]],
    }
    for module, argvs in cases.items():
        run = _run_python(f"import sys\nfrom {module} import main\nfor argv in {argvs!r}:\n    try:\n"
                          f"        main(argv)\n    except SystemExit as e:\n        print(e.code)\n"
                          f"print('torch' in sys.modules)")
        assert run.stdout.split() == ["2"] * len(argvs) + ["False"], run.stderr
        assert len(run.stderr.splitlines()) == len(argvs) and "Traceback" not in run.stderr


#: Python that prints which of torch and transformers a subprocess imported.
PRINT_MODEL_CODE = "print(sorted({'torch', 'transformers'} & set(sys.modules)))"


def test_a_finetune_config_is_loaded_and_checked_without_model_code():
    run = _run_python(f"import sys\nimport finetune.config, slp.config\ntry:\n"
                      f"    slp.config.load_config(finetune.config.FinetuneConfig, {CONFIG!r}, ['optim.epochs=abc'])\n"
                      f"except slp.config.ConfigError as e:\n    print(e)\n{PRINT_MODEL_CODE}")
    assert run.stdout.splitlines() == [f"{CONFIG}.optim.epochs: expected an integer, got 'abc'",
                                       "[]"], run.stderr


def test_config_and_override_mistakes_are_reported_before_model_code_loads():
    """slp-finetune with a wrong override or config value: exit 2, one line naming it, neither torch nor
    transformers imported."""
    mistakes = {"optim.epochs=abc": f"{CONFIG}.optim.epochs: expected an integer, got 'abc'",
                "mixed_precision=fp8": f"{CONFIG}.mixed_precision: expected one of ('no', 'bf16'), got 'fp8'",
                "optim.epoch=3": f"{CONFIG}.optim: unknown key(s) ['epoch']",
                "encoder.manual.width=wide": f"{CONFIG}.encoder.manual.width: expected an integer, got 'wide'"}
    argvs = [["--task", "islr", "--config", CONFIG, override] for override in mistakes]
    run = _run_python(f"import sys\nfrom finetune.cli import main\nfor argv in {argvs!r}:\n    try:\n"
                      f"        main(argv)\n    except SystemExit as e:\n        print(e.code)\n{PRINT_MODEL_CODE}")
    assert run.stdout.splitlines() == ["2"] * len(argvs) + ["[]"], run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == len(argvs) and "Traceback" not in run.stderr, run.stderr
    for line, expected in zip(lines, mistakes.values()):
        assert line.startswith(f"slp-finetune: error: {expected}"), line


def test_the_models_package_loads_its_names_on_first_use():
    """slp.models imports no torch until a model is asked for; every name it lists resolves, and the model files
    hand out the configuration module's config classes."""
    run = _run_python(f"import sys\nimport slp.models, slp.models.configuration\n{PRINT_MODEL_CODE}")
    assert run.stdout == "[]\n", run.stderr
    import slp.models
    from slp.models import configuration, gcn, heatmap, stepnet
    from slp.text import mbart

    assert sorted(slp.models.__all__) == sorted(slp.models._MODULE_OF)
    for name in slp.models.__all__:
        assert getattr(slp.models, name) is getattr(importlib.import_module(slp.models._MODULE_OF[name]), name)
    assert (sign_encoder.SignEncoderConfig, sign_encoder.StreamConfig, gcn.PoseEmbeddingConfig,
            heatmap.HeatmapConfig, stepnet.StepNetConfig, mbart.DEFAULT_TEXT_ENCODER) == (
        configuration.SignEncoderConfig, configuration.StreamConfig, configuration.PoseEmbeddingConfig,
        configuration.HeatmapConfig, configuration.StepNetConfig, configuration.DEFAULT_TEXT_ENCODER)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        slp.models.__getattr__("Nope")


def test_task_names_are_the_registered_tasks():

    assert task_names() == list(registered_tasks())


def test_the_names_the_commands_spell_out_are_the_librarys():
    """What the command lines name without importing the library (which loads torch) is what the library names."""

    assert POSE_FILE_FORMATS == ("auto", *(f for f in POSE_FORMATS if f != "pickle"))
    assert cli.ENCODER_FILES == (sign_encoder.CONFIG_NAME, sign_encoder.WEIGHTS_NAME)
    assert cli.HEAD_RECORD == checkpoint.HEAD_STATE


# --- slp-finetune ------------------------------------------------------------------------------------------------


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _encoder_without(made: Made, tmp: Path, name: str, data: bytes | None = None) -> Path:
    folder = _copy(made.encoder, tmp / "encoder")
    if data is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(data)
    return folder


def _truncated_encoder_config(made, t):
    text = (made.encoder / "config.json").read_text()[:60]
    folder = _encoder_without(made, t, "config.json", text.encode())
    error = _json_error(text)
    return (["--pretrained", folder],
            f"--pretrained {folder}: {folder / 'config.json'}:{error.lineno}:{error.colno}: not valid JSON "
            f"({error.msg}; truncated?)")


def _headless_head(made, t):
    folder = _copy(made.head, t / "head")
    record = json.loads((folder / "head.json").read_text())
    del record["sha256"]
    (folder / "head.json").write_text(json.dumps(record))
    return (["--eval-only", "--checkpoint", folder],
            f"{folder / 'head.json'}: field 'sha256' is missing (slp-finetune writes format, task, head, tensors, "
            f"sha256)")


@dataclass
class Case:
    name: str
    # (fixture, tmp folder) → (argv after --task islr --config CONFIG <shards>, the line after "slp-finetune: error: ")
    make: Callable[[Made, Path], tuple[list, str]]
    exact: bool = True  # False: the expected line is a prefix (the rest quotes a library's wording)
    config: str = CONFIG


FINETUNE_CASES = [
    Case("shards_matching_nothing", lambda m, t: (
        [f"data.shards=[{t}/shards/*.tar]"], f"data.shards: no file matches {t}/shards/*.tar (from {CONFIG} or an "
                                             f"override; {SHARDS_HINT})")),
    Case("shards_a_folder", lambda m, t: (
        [f"data.shards=[{m.corpus / 'shards'}]"],
        f"data.shards: {m.corpus / 'shards'} is a folder, not a shard ({SHARDS_HINT}, e.g. "
        f"data.shards=[{m.corpus / 'shards'}/*.tar])")),
    Case("shards_empty", lambda m, t: (["data.shards=[]"], f"--config {CONFIG}: data.shards is empty ({SHARDS_HINT})")),
    Case("pretrained_missing", lambda m, t: (
        ["--pretrained", t / "none"], f"--pretrained {t / 'none'}: no such folder ({ENCODER_EXPECTED})")),
    Case("pretrained_a_file", lambda m, t: (
        ["--pretrained", m.pose], f"--pretrained {m.pose}: is a file, not a folder ({ENCODER_EXPECTED})")),
    Case("pretrained_without_weights", lambda m, t: (
        ["--pretrained", _encoder_without(m, t, "model.safetensors")],
        f"--pretrained {t / 'encoder'}: model.safetensors: no such file ({ENCODER_EXPECTED})")),
    Case("pretrained_a_head_folder", lambda m, t: (
        ["--pretrained", m.head], f"--pretrained {m.head}: a fine-tuned head folder, not a pre-trained encoder "
                                  f"export (evaluate it with --eval-only --checkpoint {m.head})")),
    Case("pretrained_config_truncated", _truncated_encoder_config),
    Case("pretrained_config_of_another_model", lambda m, t: (
        ["--pretrained", _encoder_without(m, t, "config.json", (m.head / "config.json").read_bytes())],
        f"--pretrained {t / 'encoder'}: not a SignPoseEncoder export ({t / 'encoder' / 'config.json'}: unknown "
        f"key(s) ['cslr', 'data', 'encoder', 'islr'"), exact=False),
    Case("pretrained_weights_truncated", lambda m, t: (
        ["--pretrained", _encoder_without(m, t, "model.safetensors",
                                          (m.encoder / "model.safetensors").read_bytes()[:5000])],
        f"--pretrained {t / 'encoder'}: {t / 'encoder' / 'model.safetensors'}: unreadable safetensors (Error while "
        f"deserializing header"), exact=False),
    Case("config_missing", lambda m, t: ([], f"--config {t / 'none.yaml'}: no such file"), config="{t}/none.yaml"),
    Case("config_empty", lambda m, t: (  # the defaults: no shards
        ["data.shards=[]"], f"--config {t / 'empty.yaml'}: data.shards is empty ({SHARDS_HINT})"),
         config="{t}/empty.yaml"),
    Case("config_a_folder", lambda m, t: ([], f"--config {t}: is a directory, not a file"), config="{t}"),
    Case("config_of_another_task", lambda m, t: (
        [], "--config configs/finetune/cslr/synthetic.yaml: has a cslr section, options of the cslr head, which "
            "--task islr does not read: a config of task cslr? (run --task cslr, or take a configs/finetune/islr/ "
            "config)"), config="configs/finetune/cslr/synthetic.yaml"),
    Case("task_as_an_override", lambda m, t: (
        ["task=slt"], "override 'task=slt': the task is --task (see slp-finetune --help)")),
    Case("override_with_a_yaml_tag", lambda m, t: (
        ["seed=!!python/object:os.system"], "override 'seed=!!python/object:os.system': invalid YAML value (could "
                                            "not determine a constructor for the tag "
                                            "'tag:yaml.org,2002:python/object:os.system')")),
    Case("output_a_file", lambda m, t: ([f"output={m.pose}"], f"output={m.pose}: is a file, not a folder")),
    Case("checkpoint_missing", lambda m, t: (
        ["--eval-only", "--checkpoint", t / "none"], f"--checkpoint {t / 'none'}: no such file or folder")),
    Case("checkpoint_without_eval_only", lambda m, t: (
        ["--checkpoint", m.head], "--checkpoint is evaluated with --eval-only (training starts from --pretrained or "
                                  "from scratch) (see slp-finetune --help)")),
    Case("allow_mismatch_without_eval_only", lambda m, t: (
        ["--allow-vocabulary-mismatch"], "--allow-vocabulary-mismatch applies to --eval-only (see slp-finetune "
                                         "--help)")),
    Case("head_json_without_sha256", _headless_head),
    Case("overrides_after_options", lambda m, t: (  # read wherever they stand (parse_intermixed_args)
        ["--eval-only", "--checkpoint", m.head, "data.shards=[]"],
        f"--config {CONFIG}: data.shards is empty ({SHARDS_HINT})")),
]


def test_finetune_cases_are_distinct():
    assert len({case.name for case in FINETUNE_CASES}) == len(FINETUNE_CASES)


@pytest.mark.parametrize("case", FINETUNE_CASES, ids=[case.name for case in FINETUNE_CASES])
def test_each_finetune_mistake_is_one_line_and_status_2(case, made, tmp_path, capsys):
    extra, expected = case.make(made, tmp_path)
    (tmp_path / "empty.yaml").touch()
    argv = ["--task", "islr", "--config", case.config.format(t=tmp_path), made.shards, f"output={tmp_path / 'run'}",
            *extra]
    line = one_line_error(capsys, finetune, argv)
    if case.exact:
        assert line == f"slp-finetune: error: {expected}"
    else:
        assert line.startswith(f"slp-finetune: error: {expected}"), line
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_the_first_users_wlasl_command_names_the_pattern_and_the_override(made, capsys):
    pattern = yaml.safe_load(Path("configs/finetune/islr/wlasl.yaml").read_text())["data"]["shards"][0]
    if list(Path("/").glob(pattern.lstrip("/"))):
        pytest.skip(f"{pattern} matches shards on this machine")
    line = one_line_error(capsys, finetune, ["--task", "islr", "--config", "configs/finetune/islr/wlasl.yaml",
                                             "--pretrained", made.encoder])
    assert line == (f"slp-finetune: error: data.shards: no file matches {pattern} (from "
                    f"configs/finetune/islr/wlasl.yaml or an override; {SHARDS_HINT})")


def _eval_only(made: Made, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["--task", "islr", "--config", CONFIG, made.shards, f"output={out}", "--eval-only", "--checkpoint",
            str(checkpoint), *extra]


def test_a_head_of_another_vocabulary_is_refused_unless_asked_for(made, tmp_path, capsys):
    finetune(_eval_only(made, tmp_path / "same", made.head))  # the head's own vocabulary: evaluated
    assert (tmp_path / "same" / "metrics.json").is_file()
    other = _copy(made.head, tmp_path / "other")
    record = json.loads((other / "head.json").read_text())
    names = record["outputs"]["class_names"]
    record["outputs"]["class_names"] = [names[1], names[0], *names[2:]]  # a vocabulary in another order
    (other / "head.json").write_text(json.dumps(record))
    line = one_line_error(capsys, finetune, _eval_only(made, tmp_path / "refused", other))
    assert line == (f"slp-finetune: error: the head's classes are not the data's glosses: class 0 is {names[1]!r} in "
                    f"{other / 'head.json'}, {names[0]!r} in the data (synthetic); 2 of the {len(names)} classes "
                    f"named in both differ (--allow-vocabulary-mismatch evaluates it anyway)")
    assert not (tmp_path / "refused" / "metrics.json").exists()
    finetune(_eval_only(made, tmp_path / "allowed", other, "--allow-vocabulary-mismatch"))
    assert (tmp_path / "allowed" / "metrics.json").is_file()


def test_labels_beyond_the_heads_classes_are_a_mismatch(made, tmp_path, capsys):

    record = json.loads((made.head / "head.json").read_text())
    samples = list(iter_samples(sorted((made.corpus / "shards").glob("*.tar"))))
    assert vocabulary_mismatch(record, made.head / "head.json", samples) is None
    record = {**record, "head": {"num_classes": 3}}
    beyond = next(s for s in samples if s.meta.label >= 3)
    assert vocabulary_mismatch(record, made.head / "head.json", samples) == (
        f"{made.head / 'head.json'}: the head has 3 classes, the data's label {beyond.meta.label} ({beyond.key}, "
        f"dataset synthetic) is beyond them")
    # a checkpoint (best.safetensors: no class names) of fewer classes than the data's labels, through the command
    checkpoint = tmp_path / "best.safetensors"
    shutil.copy(made.head / "model.safetensors", checkpoint)
    (tmp_path / "head.json").write_text(json.dumps({k: v for k, v in record.items() if k != "outputs"}))
    line = one_line_error(capsys, finetune, _eval_only(made, tmp_path / "eval", checkpoint))
    beyond = next(s for split in ("dev", "test") for s in samples if s.meta.split == split and s.meta.label >= 3)
    assert line == (f"slp-finetune: error: {tmp_path / 'head.json'}: the head has 3 classes, the data's label "
                    f"{beyond.meta.label} ({beyond.key}, dataset synthetic) is beyond them "
                    f"(--allow-vocabulary-mismatch evaluates it anyway)")


# --- slp-predict: the head folder's files ------------------------------------------------------------------------


def _head_with(made: Made, tmp: Path, change: Callable[[dict], object] | None = None, *, name: str = "head.json",
               data: bytes | None = None) -> Path:
    """A copy of the head folder whose ``name`` is ``data``, or whose head.json is ``change(record)``."""
    folder = _copy(made.head, tmp / "head")
    if change is not None:
        data = json.dumps(change(json.loads((folder / "head.json").read_text()))).encode()
    (folder / name).write_bytes(data)
    return folder


def _record_case(change: Callable[[dict], object], problem: str) -> Callable[[Made, Path], tuple[Path, str]]:
    def make(m: Made, t: Path) -> tuple[Path, str]:
        folder = _head_with(m, t, change)
        return folder, f"{folder / 'head.json'}: {problem}"

    return make


def _first_tensor(record: dict) -> str:
    return next(iter(record["tensors"]))


def _without_field(name: str) -> Callable[[dict], dict]:
    return lambda record: {k: v for k, v in record.items() if k != name}


def _with(**fields) -> Callable[[dict], dict]:
    return lambda record: {**record, **fields}


def _truncated(name: str):
    def make(m: Made, t: Path) -> tuple[Path, str]:
        text = (m.head / name).read_text()[:100]
        error = _json_error(text)
        return (_head_with(m, t, name=name, data=text.encode()),
                f"{t / 'head' / name}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}; truncated?)")

    return make


def _tensor_shape_case(m: Made, t: Path) -> tuple[Path, str]:
    name = _first_tensor(json.loads((m.head / "head.json").read_text()))
    folder = _head_with(m, t, lambda r: {**r, "tensors": {**r["tensors"], name: "big"}})
    return folder, (f"{folder / 'head.json'}: field 'tensors': the shape of {name} is 'big', expected a list of "
                    f"sizes")


MISSING = "is missing (slp-finetune writes format, task, head, tensors, sha256)"
HEAD_CASES = {
    "sha256_missing": _record_case(_without_field("sha256"), f"field 'sha256' {MISSING}"),
    "format_missing": _record_case(_without_field("format"), f"field 'format' {MISSING}"),
    "task_missing": _record_case(_without_field("task"), f"field 'task' {MISSING}"),
    "head_missing": _record_case(_without_field("head"), f"field 'head' {MISSING}"),
    "tensors_missing": _record_case(_without_field("tensors"), f"field 'tensors' {MISSING}"),
    "format_of_another_version": _record_case(_with(format=2),
                                              "format 2: this slp version reads head records of format 1"),
    "task_a_number": _record_case(_with(task=3), "field 'task' is a number, expected a task name"),
    "head_a_list": _record_case(_with(head=[6]), "field 'head' is a list, expected a mapping (the head's state)"),
    "tensors_a_list": _record_case(_with(tensors=[1]),
                                   "field 'tensors' is a list, expected a mapping of tensor names to shapes"),
    "tensor_shape_a_string": _tensor_shape_case,
    "sha256_not_hex": _record_case(_with(sha256="abc"), "field 'sha256' is 'abc', expected 64 hex digits"),
    "outputs_a_list": _record_case(_with(outputs=[]), "field 'outputs' is a list, expected a mapping"),
    "class_names_not_strings": _record_case(_with(outputs={"class_names": [1, 2]}),
                                            "field 'outputs.class_names' is a list, expected a list of strings"),
    "head_state_without_its_class_count": _record_case(
        _with(head={}), "its 'head' state does not rebuild the head (KeyError: 'num_classes')"),
    "record_a_json_list": _record_case(lambda r: [r], "holds a list, not the mapping of a head record"),
    "record_truncated": _truncated("head.json"),
    "record_not_utf8": lambda m, t: (_head_with(m, t, data=b'{"format": 1, "task": "caf\xe9"}'),
                                     f"{t / 'head' / 'head.json'}: not UTF-8 text (invalid continuation byte at "
                                     f"byte 26)"),
    "config_truncated": _truncated("config.json"),
    "config_a_json_list": lambda m, t: (_head_with(m, t, name="config.json", data=b"[1]"),
                                        f"{t / 'head' / 'config.json'}: not the config of a head folder (a JSON "
                                        f"mapping of FinetuneConfig's sections)"),
    "record_a_folder": lambda m, t: (_folder_instead(m, t, "head.json"),
                                     f"{t / 'head'}: not a fine-tuned head folder (no head.json and "
                                     f"model.safetensors; slp-finetune writes one to <output>/model)"),
    "config_missing": lambda m, t: (_without(m, t, "config.json"),
                                    f"{t / 'head' / 'config.json'}: no such file (a head folder holds the config of "
                                    f"the run that trained it)"),
    "weights_truncated": lambda m, t: (
        _head_with(m, t, name="model.safetensors", data=(m.head / "model.safetensors").read_bytes()[:4000]),
        f"checkpoint {t / 'head' / 'model.safetensors'} is damaged: its sha256 differs from the one in "
        f"{t / 'head' / 'head.json'}"),
    "model_a_file": lambda m, t: (m.head / "model.safetensors",
                                  f"--model {m.head / 'model.safetensors'}: is a file, not a folder (a head folder: a "
                                  f"fine-tuning run's <output>/model)"),
}


def _folder_instead(made: Made, tmp: Path, name: str) -> Path:
    folder = _without(made, tmp, name)
    (folder / name).mkdir()
    return folder


def _without(made: Made, tmp: Path, name: str) -> Path:
    folder = _copy(made.head, tmp / "head")
    (folder / name).unlink()
    return folder


@pytest.mark.parametrize("name", list(HEAD_CASES))
def test_each_head_folder_problem_is_one_line_and_status_2(name, made, tmp_path, capsys):
    model, expected = HEAD_CASES[name](made, tmp_path)
    assert one_line_error(capsys, predict, ["--model", model, made.pose]) == f"slp-predict: error: {expected}"


def test_loading_a_file_as_a_head_folder_names_it(made):
    with pytest.raises(UserError) as error:
        load_finetuned(made.head / "model.safetensors")
    assert str(error.value) == (f"{made.head / 'model.safetensors'}: is a file, not a head folder (give the folder "
                                f"holding head.json and model.safetensors: a fine-tuning run's <output>/model)")


# --- slp-predict: options, --texts and inputs ---------------------------------------------------------------------


def _garbage_shard(tmp: Path) -> Path:
    return _write(tmp / "broken.tar", b"not a tar archive" * 64)


PREDICT_CASES = {  # (fixture, tmp folder) → (the arguments after --model HEAD, the line after "slp-predict: error: ")
    "texts_missing": lambda m, t: ([m.pose, "--texts", t / "none.txt"], f"--texts: {t / 'none.txt'}: no such file"),
    "texts_a_folder": lambda m, t: ([m.pose, "--texts", t], f"--texts: {t}: is a directory, not a file"),
    "texts_not_utf8": lambda m, t: ([m.pose, "--texts", _write(t / "s.txt", b"caf\xe9\n")],
                                    f"--texts: {t / 's.txt'}: not UTF-8 text (invalid continuation byte at byte 3)"),
    "texts_and_text": lambda m, t: ([m.pose, "--texts", _write(t / "s.txt", "a\n"), "--text", "hello"],
                                    "give either --texts FILE (candidate sentences) or --text SENTENCE, not both"),
    "out_a_folder": lambda m, t: ([m.pose, "--out", t], f"--out {t}: is a folder (give the JSON file to write)"),
    "render_a_file_in_a_batch": lambda m, t: ([m.pose, m.pose, "--render", m.pose],
                                              f"--render {m.pose}: is a file, not a folder (a batch renders one GIF "
                                              f"per input into a folder)"),
    "render_of_another_format": lambda m, t: ([m.pose, "--render", t / "r.png"],
                                              f"--render {t / 'r.png'}: animation format '.png' not supported (use "
                                              f".gif or .mp4)"),
    "batch_size_zero": lambda m, t: ([m.pose, "--batch-size", "0"], "--batch-size 0: must be positive"),
    "top_k_zero": lambda m, t: ([m.pose, "--top-k", "0"], "--top-k 0: must be positive"),
    "input_missing": lambda m, t: ([t / "none.pose"], f"{t / 'none.pose'}: no such file or folder"),
    "key_of_a_shard_that_reads_nothing": lambda m, t: (
        [_garbage_shard(t), "--key", "x"], f"{t / 'broken.tar'}: no sample 'x' in this shard (damaged: the rest of "
                                           f"the shard skipped: truncated tar (no end-of-archive marker))"),
    "whole_shard_that_reads_nothing": lambda m, t: (
        [_garbage_shard(t), "--no-progress"], f"{t / 'broken.tar'}: the rest of the shard skipped: truncated tar (no "
                                              f"end-of-archive marker)"),
    "text_with_an_islr_head": lambda m, t: ([m.pose, "--text", "hello"],
                                            f"--texts / --text: {m.head} is a 'islr' head, not a retrieval head"),
}


@pytest.mark.parametrize("name", list(PREDICT_CASES))
def test_each_predict_mistake_is_one_line_and_status_2(name, made, tmp_path, capsys):
    argv, expected = PREDICT_CASES[name](made, tmp_path)
    assert one_line_error(capsys, predict, ["--model", made.head, *argv]) == f"slp-predict: error: {expected}"


def test_a_batch_with_failed_inputs_exits_1_after_its_summary(made, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(made.pose, inputs / "a.pose")
    _write(inputs / "broken.pose", b"not a pose file")
    shard = next((made.corpus / "shards").glob("*isolated*.tar"))
    data = shard.read_bytes()
    _write(inputs / "half.tar", data[: len(data) // 2])  # some samples read, the rest is skipped
    (tmp_path / "list.txt").write_text("inputs/a.pose\ninputs/missing.pose\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        predict([str(inputs), str(tmp_path / "list.txt"), "--model", str(made.head), "--out",
                 str(tmp_path / "p.json"), "--no-progress"])
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["inputs"] == summary["predicted"] + summary["failed"] and summary["failed"] == len(summary["errors"])
    assert summary["predicted"] == len(summary["predictions"]) >= 3
    failed = {e["input"]: e["error"] for e in summary["errors"]}
    half = str(inputs / "half.tar")
    assert failed.pop(str(inputs / "broken.pose")).startswith(f"{inputs / 'broken.pose'}: not a readable .pose file")
    assert failed.pop(str(inputs / "missing.pose")) == f"{inputs / 'missing.pose'}: no such file"
    assert failed.pop(half) == f"{half}: the rest of the shard skipped: truncated tar (no end-of-archive marker)"
    assert all(name.startswith(f"{half}:") and message.startswith(f"{half}: ") for name, message in failed.items())
    assert err.splitlines() == [f"slp-predict: {e['error']}" for e in summary["errors"]]  # one line each, in order
    assert f"wrote {tmp_path / 'p.json'}" in out
    assert f"{summary['inputs']} inputs: {summary['predicted']} predicted, {summary['failed']} failed" in out


def test_a_batch_where_every_input_is_predicted_exits_0(made, tmp_path, capsys):
    shutil.copy(made.pose, tmp_path / "a.pose")
    shutil.copy(made.pose, tmp_path / "b.pose")
    predict(["--model", str(made.head), str(tmp_path), "--out", str(tmp_path / "p.json"), "--no-progress"])
    summary = json.loads((tmp_path / "p.json").read_text())
    assert (summary["inputs"], summary["predicted"], summary["failed"]) == (2, 2, 0)
    assert capsys.readouterr().err == ""
