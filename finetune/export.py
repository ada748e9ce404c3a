"""Self-contained fine-tuned heads: a folder that loads with no config file, no training data and no original path,
ready to upload to the Hugging Face Hub as it is (``hf upload ORG/NAME DIR``).

``slp-finetune`` writes one to ``<output>/model`` at the end of a training run, from the best checkpoint:

- ``model.safetensors``: every trained weight of the head, the pose encoder's included (a frozen retrieval text
  encoder is in ``text_model/`` instead, as :meth:`RetrievalHead.state_dict` leaves it out);
- ``head.json`` (:mod:`finetune.checkpoint`): the task, the head's state, what its outputs mean (``outputs``: ISLR's
  class names from the training glosses, the text languages of a translation or retrieval head), the tensors'
  shapes and the weights' sha256;
- ``config.json``: the run's whole :class:`FinetuneConfig`, its ``encoder`` section being the encoder the head holds
  (a ``--pretrained`` encoder's config), its text model (``slt.text_model``, ``retrieval.text_model``) ``text_model``,
  the folder below, read relative to the head's folder;
- ``text_model/``: what the head reads of mBART. SLT: the tokenizer. Retrieval: the tokenizer and the text encoder,
  saved as an ``MBartModel`` without decoder layers (the head reads mBART's encoder only; the decoder's position
  table and norms that remain are never used), which :meth:`FrozenTextEncoder.from_pretrained` loads as it loads
  ``facebook/mbart-large-cc25``;
- ``README.md``: the model card (:func:`slp.models.model_card.render_card`): Hugging Face metadata (with the test
  metrics as ``model-index``), the install line and a Python example that loads the folder and predicts on a pose,
  the intended use and limitations (a demo model when trained on the synthetic corpus), the architecture and config
  (without the training machine's paths), the pose specification, the training data (the clips the task read, and
  the manifest's rows of their split), the pre-trained encoder it started from (by Hub id or weights' sha256, never
  a local path) with that pre-training's figures, and the run's metrics table.

:func:`load_finetuned` loads such a folder, or a Hub repository id through ``huggingface_hub``'s cache, and rebuilds
the head through its task's ``build_head`` with the saved state, then the saved weights: the same outputs, bit for
bit.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from finetune.checkpoint import HEAD_STATE, load_head_weights, read_head_record, rebuilding_from, save_head
from finetune.config import FinetuneConfig
from finetune.tasks import task_module
from slp.cli_errors import UserError, file_problem, folder_problem, read_user_json
from slp.config import ConfigError, from_dict, is_int
from slp.data.schema import Sample
from slp.data.shards import expand_shards
from slp.models.model_card import (
    PLACEHOLDER,
    card_data_from_shards,
    front_matter,
    intended_use_section,
    is_hub_id,
    metrics_table,
    pretraining_section,
    render_card,
    text_model_reference,
    usage_section,
)
from slp.models.sign_encoder import SignPoseEncoder

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
TEXT_MODEL_DIR = "text_model"
#: The config field naming the text model each task reads when it is built (ISLR's NLA options keep their gloss
#: embeddings in the weights and read no text model once trained).
TEXT_MODEL_FIELDS = {"slt": "slt", "retrieval": "retrieval"}
TASK_TITLES = {"islr": "Isolated sign language recognition", "cslr": "Continuous sign language recognition",
               "slt": "Gloss-free sign language translation", "retrieval": "Sign-text retrieval"}
#: Hugging Face pipeline tags where one fits: retrieval embeds clips and texts. None for the others: the Hub's
#: classification tags (video-classification…) take pixels, and every head reads keypoints (tagged `keypoints`).
PIPELINE_TAGS = {"retrieval": "feature-extraction"}
#: The clips of its training split each task reads (its ``keep``), for the card's training-data note.
TASK_CLIPS = {"islr": "labelled isolated signs", "cslr": "clips with a gloss sequence",
              "slt": "clips paired with a sentence", "retrieval": "clips paired with a text"}


@dataclass
class FinetunedModel:
    """A loaded head folder: the head (in eval mode), its config, its ``head.json`` and the folder."""

    head: nn.Module
    config: FinetuneConfig
    record: dict
    directory: Path

    @property
    def task(self) -> str:
        return self.record["task"]

    @property
    def outputs(self) -> dict:
        return self.record.get("outputs", {})


def class_names(train: list[Sample], num_classes: int) -> list[str]:
    """The gloss of each ISLR class: the commonest ``meta.gloss`` of its training clips (``""`` for a class without
    clips or glosses)."""
    glosses: list[Counter[str]] = [Counter() for _ in range(num_classes)]
    for sample in train:
        if isinstance(sample.meta.gloss, str) and sample.meta.gloss.strip():
            glosses[sample.meta.label][sample.meta.gloss.strip()] += 1
    return [counts.most_common(1)[0][0] if counts else "" for counts in glosses]


def head_outputs(task: str, head: nn.Module, train: list[Sample]) -> dict[str, Any]:
    """``head.json``'s ``outputs``: what a prediction of this head means beyond its own state."""
    if task == "islr":
        return {"class_names": class_names(train, head.num_classes)}
    if task in ("slt", "retrieval"):
        return {"text_languages": sorted({s.meta.text_language for s in train if s.meta.text_language})}
    return {}


def _save_text_model(task: str, head: nn.Module, directory: Path) -> None:
    """``text_model/``: the tokenizer (SLT) or the tokenizer and the mBART encoder (retrieval); see the module
    docstring."""
    if task == "slt":
        head.tokenizer.tokenizer.save_pretrained(directory)
    elif task == "retrieval":
        from transformers import MBartModel

        encoder = head.text_encoder if head.train_text_encoder else head.text_encoder.encoder
        config = copy.deepcopy(encoder.config)
        config.decoder_layers = 0
        model = MBartModel(config)
        model.encoder.load_state_dict(encoder.state_dict())
        model.save_pretrained(directory)
        head.text_tokenizer.tokenizer.save_pretrained(directory)


def saved_config(cfg: FinetuneConfig, head: nn.Module) -> FinetuneConfig:
    """The config a head folder records: ``cfg`` with the encoder the head holds and the text model in the folder."""
    encoder = head.encoder.config if isinstance(head.encoder, SignPoseEncoder) else cfg.encoder
    saved = dataclasses.replace(cfg, encoder=copy.deepcopy(encoder))
    if cfg.task in TEXT_MODEL_FIELDS:
        section = getattr(saved, TEXT_MODEL_FIELDS[cfg.task])
        setattr(saved, TEXT_MODEL_FIELDS[cfg.task], dataclasses.replace(section, text_model=TEXT_MODEL_DIR))
    return saved


def training_card_data(cfg: FinetuneConfig) -> dict[str, Any]:
    """What the card states about the training data of ``cfg`` (:func:`card_data_from_shards`): the manifest's rows
    of the training split (of ``data.dataset``) in the shards ``data.shards`` names, their hash and estimators."""
    data = cfg.data

    def read(row: dict) -> bool:
        return row["split"] == data.train_split and (not data.dataset or row["dataset"] == data.dataset)

    return card_data_from_shards(expand_shards(data.shards), read)


def save_finetuned(head: nn.Module, cfg: FinetuneConfig, directory: str | Path, *, train: list[Sample],
                   results: dict | None = None, pretrained: str | None = None,
                   card_data: dict[str, Any] | None = None) -> Path:
    """Write the head folder of ``head`` (trained with ``cfg`` on ``train``) to ``directory``. The card states
    ``results`` (the run's ``metrics.json``: ``dev`` and ``test``), ``pretrained`` (the encoder it started from)
    and ``card_data`` (:func:`training_card_data`; None: the training data is not recorded)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_head(head, directory / WEIGHTS_NAME, cfg.task, head_outputs(cfg.task, head, train))
    (directory / CONFIG_NAME).write_text(
        json.dumps(dataclasses.asdict(saved_config(cfg, head)), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8")
    _save_text_model(cfg.task, head, directory / TEXT_MODEL_DIR)
    record = json.loads((directory / HEAD_STATE).read_text(encoding="utf-8"))
    (directory / CARD_NAME).write_text(render_head_card(head, cfg, record, train=train, results=results,
                                                        pretrained=pretrained, card_data=card_data or {}),
                                       encoding="utf-8")
    return directory


def _task_summary(cfg: FinetuneConfig, record: dict) -> str:
    """One sentence on what the head outputs, from its state."""
    state, outputs = record["head"], record.get("outputs", {})
    if cfg.task == "islr":
        names = [n for n in outputs.get("class_names", []) if n]
        shown = ", ".join(f"`{n}`" for n in names[:10]) + (", …" if len(names) > 10 else "")
        return f"Output: scores of {state['num_classes']} classes" + (f" ({shown})." if names else ".")
    if cfg.task == "cslr":
        return (f"Output: a gloss sequence over {len(state['glosses'])} glosses, CTC prefix beam search "
                f"(beam {cfg.cslr.beam_size}).")
    languages = ", ".join(outputs.get("text_languages", [])) or "unknown"
    if cfg.task == "slt":
        return (f"Output: a sentence ({languages}), beam search (beam {cfg.slt.beam_size}) over a decoder vocabulary "
                f"of {len(state['vocabulary'])} mBART pieces; `text_model/` holds the tokenizer of "
                f"{text_model_reference(cfg.slt.text_model)}.")
    return (f"Output: {cfg.retrieval.similarity} sign-text similarity in a {state['embed_dim']}-d space; texts "
            f"({languages}) are read by the mBART encoder of {text_model_reference(cfg.retrieval.text_model)} "
            f"({'fine-tuned' if state['train_text_encoder'] else 'frozen'}), held in `text_model/`.")


def card_config(cfg: FinetuneConfig, head: nn.Module) -> dict[str, Any]:
    """The config a card shows: :func:`saved_config` without the training machine's paths, which mean nothing
    elsewhere (``output``, ``data.shards``; a local text model or word-vector file the head does not hold is marked
    so); ``config.json`` keeps the run's whole config."""
    config = dataclasses.asdict(saved_config(cfg, head))
    del config["output"], config["data"]["shards"]
    nla = config["islr"]["nla"]
    others = [(nla, "text_model"), (nla, "word_vectors")] + [
        (config[name], "text_model") for name in ("slt", "retrieval") if TEXT_MODEL_FIELDS.get(cfg.task) != name]
    for section, key in others:  # (the task's own text model is the folder's text_model/)
        if section[key] and not is_hub_id(section[key]):
            section[key] = "<a local path>"
    return config


def pretrained_origin(pretrained: str | None) -> tuple[str, dict[str, Any] | None]:
    """The card's sentence on where the pose encoder started, and the pre-training figures its export records (None:
    not recorded). A pre-trained encoder is named by its Hub id (a local folder's path is not named) and its weights'
    sha256, with the datasets it was pre-trained on when its ``training.json`` records them."""
    if not pretrained:
        return "The pose encoder was trained from scratch.", None
    record = SignPoseEncoder.training_record(pretrained)
    name = f" `{pretrained}`" if is_hub_id(pretrained) else ""
    text = (f"The pose encoder started from a pre-trained slp encoder{name} (its `model.safetensors` sha256 "
            f"`{record['weights_sha256']}`)")
    counts = (record.get("training_data") or {}).get("counts") or {}
    if counts:
        text += ", pre-trained on " + ", ".join(f"{int(n):,} `{dataset}` samples" for dataset, n in counts.items())
    return text + ".", record.get("pretraining")


def usage_example(task: str, record: dict) -> str:
    """The card's Python example: load the folder and predict on one clip (random points; ``read_pose_clip`` reads
    a pose file), as ``slp-predict`` does."""
    languages = record.get("outputs", {}).get("text_languages", [])
    language = f", language={languages[0]!r}" if task in ("slt", "retrieval") and len(languages) > 1 else ""
    texts = ('predictor.set_texts(["The first candidate sentence.", "The second one."])  # retrieval ranks these\n'
             if task == "retrieval" else "")
    printed = {"islr": "the top-5 classes: gloss and probability", "cslr": "the gloss sequence",
               "slt": "the sentence", "retrieval": "the candidate sentences, best first"}[task]
    return f'''
import numpy as np

from finetune.export import load_finetuned
from finetune.predict import Clip, Predictor

model = load_finetuned("{PLACEHOLDER}")  # a Hub repository id or a local folder
predictor = Predictor(model{language})  # device="cuda" on a GPU
{texts}# A clip as slp's shards hold it, (T, 79, 3): x / width, y / height, confidence. Random points here;
# finetune.predict.read_pose_clip("clip.pose", "clip") reads one from a pose file (MMPose, MediaPipe, OpenPose...).
rng = np.random.default_rng(0)
pose = np.concatenate([rng.uniform(0.3, 0.7, (48, 79, 2)), np.ones((48, 79, 1))], axis=-1).astype(np.float32)
clip = Clip("example", pose, fps=25.0, width=640, height=480)
print(predictor.predict([clip])[0])  # {printed}
'''


def synthetic_content(cfg: FinetuneConfig, record: dict) -> str:
    """What a head trained on the synthetic corpus learnt of it, in a few words."""
    state, outputs = record["head"], record.get("outputs", {})
    languages = "/".join(outputs.get("text_languages", []))
    if cfg.task == "islr":
        return f"{state['num_classes']} synthetic glosses"
    if cfg.task == "cslr":
        return f"sentences over {len(state['glosses'])} synthetic glosses"
    return f"synthetic sentences ({languages})" if languages else "synthetic sentences"


def render_head_card(head: nn.Module, cfg: FinetuneConfig, record: dict, *, train: list[Sample],
                     results: dict | None = None, pretrained: str | None = None,
                     card_data: dict[str, Any] | None = None) -> str:
    """The model card of a head folder (see the module docstring)."""
    task = task_module(cfg.task)
    data = cfg.data
    dataset = data.dataset or "every dataset"
    architecture = " ".join(inspect.cleandoc(task.__doc__ or "").split("\n\n")[0].split())
    origin, figures = pretrained_origin(pretrained)
    description = "\n\n".join([
        f"An slp model fine-tuned for {TASK_TITLES[cfg.task].lower()} (task `{cfg.task}`). {architecture} "
        f"{sum(p.numel() for p in head.parameters()):,} parameters.",
        _task_summary(cfg, record), origin])
    usage = usage_section(usage_example(cfg.task, record),
                          f"```bash\nslp-predict --model {PLACEHOLDER} clip.pose --out prediction.json   "
                          "# or a video (--backend mediapipe), a shard sample, a folder\n```")
    metadata: dict[str, Any] = {}
    sections = ""
    if results:
        dev, test = results["dev"], results["test"]
        sections = (f"Dev: split `{data.dev_split}`, test: split `{data.test_split}` of {dataset}.\n\n"
                    + metrics_table({"dev": dev, "test": test}) + "\n\n```\n" + task.results_table(dev, test)
                    + "\n```")
        scores = [{"type": name, "value": round(value, 4), "name": f"{data.test_split} {name}"}
                  for name, value in test.items() if isinstance(value, float)]
        metadata["model-index"] = [{"name": f"slp-{cfg.task}-{data.dataset or 'all'}", "results": [
            {"task": {"type": cfg.task, "name": TASK_TITLES[cfg.task]},
             "dataset": {"name": data.dataset or "all", "type": data.dataset or "all", "split": data.test_split},
             "metrics": scores}]}]
    # The table counts the clips the head was trained on; the manifest's rows of the split (every kind of sample
    # it holds) are a second number, said as such.
    card_data = card_data or {}
    counts = dict(sorted(Counter(s.meta.dataset for s in train).items()))
    manifest = card_data.get("training_data") or {}
    note = (f"Fine-tuned on {len(train):,} clips: the {TASK_CLIPS[cfg.task]} of split `{data.train_split}` of "
            f"{dataset} that the `{cfg.task}` task reads (per dataset below).")
    listed = sum(int(n) for n in (manifest.get("counts") or {}).values())
    if manifest:
        note += (f" The curation manifest (its sha256 below) lists {listed:,} samples of that split in the shards "
                 "read, every kind of sample included.")
    training_data = {"counts": counts, **({"manifest_sha256": manifest["manifest_sha256"]}
                                          if manifest.get("manifest_sha256") else {})}
    intro = "The pre-training run of the encoder this head started from. "
    return render_card(TASK_TITLES[cfg.task], description, usage,
                       intended_use_section(counts, model=f"{TASK_TITLES[cfg.task].lower()} model",
                                            synthetic_content=synthetic_content(cfg, record)),
                       card_config(cfg, head),
                       config_note="The run's config, without the training machine's paths (`output`, "
                                   "`data.shards`); `encoder` is the encoder the head holds.",
                       pose_estimator=card_data.get("pose_estimator", ""), training_data=training_data,
                       training_note=note, pretraining=pretraining_section(figures, intro) if figures else "",
                       metrics=sections, outputs="Predictions",
                       metadata=front_matter(PIPELINE_TAGS.get(cfg.task), ("sign-language-" + cfg.task,), **metadata))


def is_head_folder(path: str | Path) -> bool:
    """A folder holding a head's ``head.json`` and ``model.safetensors`` (:func:`save_finetuned`)."""
    return (Path(path) / HEAD_STATE).is_file() and (Path(path) / WEIGHTS_NAME).is_file()


def read_finetuned_config(directory: str | Path) -> FinetuneConfig:
    """The ``config.json`` of a head folder, its text model resolved to the folder's ``text_model/``."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if problem := file_problem(path):
        raise UserError(f"{path}: {problem} (a head folder holds the config of the run that trained it)")
    data = read_user_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: not the config of a head folder (a JSON mapping of FinetuneConfig's sections)")
    try:
        cfg = from_dict(FinetuneConfig, data, str(path))
    except ConfigError as exc:
        raise UserError(f"{path}: not the config of a head folder ({exc})") from None
    if cfg.task in TEXT_MODEL_FIELDS:
        section = getattr(cfg, TEXT_MODEL_FIELDS[cfg.task])
        text_model = directory / section.text_model
        if problem := folder_problem(text_model):
            raise UserError(f"{text_model}: {problem} (a {cfg.task} head folder holds the text model it reads there)")
        setattr(cfg, TEXT_MODEL_FIELDS[cfg.task], dataclasses.replace(section, text_model=str(text_model)))
    return cfg


def head_folder(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The local folder of a head: ``name_or_path`` when it is a folder, else the Hub repository ``name_or_path``
    (at ``revision``) through ``huggingface_hub``'s cache (``HF_HUB_OFFLINE=1``: a repository downloaded before)."""
    directory = Path(name_or_path)
    if directory.is_file():
        raise UserError(f"{name_or_path}: is a file, not a head folder (give the folder holding {HEAD_STATE} and "
                        f"{WEIGHTS_NAME}: a fine-tuning run's <output>/model)")
    if not directory.is_dir():
        from huggingface_hub import snapshot_download

        try:
            directory = Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=[
                WEIGHTS_NAME, HEAD_STATE, CONFIG_NAME, CARD_NAME, f"{TEXT_MODEL_DIR}/*"]))
        except (OSError, ValueError) as exc:  # not a repository id, not found, not cached while offline
            raise UserError(f"{name_or_path}: no such folder, nor a Hub repository that loads "
                            f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if not is_head_folder(directory):
        raise UserError(f"{name_or_path}: not a fine-tuned head folder (no {HEAD_STATE} and {WEIGHTS_NAME}; "
                        f"slp-finetune writes one to <output>/model)")
    return directory


def load_finetuned(name_or_path: str | Path, *, revision: str | None = None, device: str | None = None
                   ) -> FinetunedModel:
    """Load a head folder (:func:`save_finetuned`) or a Hub repository id holding one, in eval mode, on ``device``
    (the CPU by default). The weights are checked against ``head.json`` (sha256, shapes) first."""
    directory = head_folder(name_or_path, revision)
    record = read_head_record(directory / WEIGHTS_NAME, None)
    cfg = read_finetuned_config(directory)
    if cfg.task != record["task"]:
        raise UserError(f"{directory}: {CONFIG_NAME} is a {cfg.task!r} config, {HEAD_STATE} a {record['task']!r} head")
    with rebuilding_from(directory / HEAD_STATE):
        head = task_module(cfg.task).build_head(cfg, SignPoseEncoder(cfg.encoder), [], record["head"])
    load_head_weights(head, directory / WEIGHTS_NAME, record)
    return FinetunedModel(head.to(device or "cpu").eval(), cfg, record, directory)


def _gloss_key(gloss: str) -> str:
    return gloss.strip().casefold()


def vocabulary_mismatch(record: dict, record_path: str | Path, samples: list[Sample]) -> str | None:
    """Why the classes of the ISLR head of ``record`` (its ``head.json`` at ``record_path``) are not the labels of
    ``samples`` (a split to evaluate it on), None when nothing says so. A head of one vocabulary scores another
    dataset's labels as if class k were the same sign in both, so a normal-looking metrics table would compare
    unrelated signs: a label beyond the head's classes, or a class whose gloss in the head (``outputs.class_names``,
    head folders only) differs from the data's (``meta.gloss``, compared without case), is a mismatch. Without
    glosses on either side nothing more can be said."""
    if record["task"] != "islr":
        return None
    labelled = [s for s in samples if s.meta.label >= 0]
    num_classes = record["head"].get("num_classes")
    beyond = next((s for s in labelled if is_int(num_classes) and s.meta.label >= num_classes), None)
    if beyond is not None:
        return (f"{record_path}: the head has {num_classes} classes, the data's label {beyond.meta.label} "
                f"({beyond.key}, dataset {beyond.meta.dataset}) is beyond them")
    head_names = record.get("outputs", {}).get("class_names", [])
    data_names = class_names(labelled, max([len(head_names), *(s.meta.label + 1 for s in labelled)]))
    differing = [k for k, (ours, theirs) in enumerate(zip(head_names, data_names))
                 if ours and theirs and _gloss_key(ours) != _gloss_key(theirs)]
    if not differing:
        return None
    k = differing[0]
    shared = sum(1 for ours, theirs in zip(head_names, data_names) if ours and theirs)
    datasets = ", ".join(sorted({s.meta.dataset for s in labelled if s.meta.label == k}))
    return (f"the head's classes are not the data's glosses: class {k} is {head_names[k]!r} in {record_path}, "
            f"{data_names[k]!r} in the data ({datasets}); {len(differing)} of the {shared} classes named in both "
            f"differ")
