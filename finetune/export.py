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
  metrics as ``model-index``), the architecture and config, the pose specification, the training data and the
  run's metrics table.

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

from finetune.checkpoint import HEAD_STATE, load_head_weights, read_head_record, save_head
from finetune.config import FinetuneConfig
from finetune.tasks import task_module
from slp.cli_errors import UserError
from slp.config import ConfigError, from_dict
from slp.data.schema import Sample
from slp.data.shards import expand_shards
from slp.models.model_card import card_data_from_shards, front_matter, metrics_table, render_card
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
#: Hugging Face pipeline tags where one fits (a classifier of clips, a feature extractor); none for the others.
PIPELINE_TAGS = {"islr": "video-classification", "retrieval": "feature-extraction"}


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
                f"`{cfg.slt.text_model}`.")
    return (f"Output: {cfg.retrieval.similarity} sign-text similarity in a {state['embed_dim']}-d space; texts "
            f"({languages}) are read by the mBART encoder of `{cfg.retrieval.text_model}` "
            f"({'fine-tuned' if state['train_text_encoder'] else 'frozen'}), held in `text_model/`.")


def render_head_card(head: nn.Module, cfg: FinetuneConfig, record: dict, *, train: list[Sample],
                     results: dict | None = None, pretrained: str | None = None,
                     card_data: dict[str, Any] | None = None) -> str:
    """The model card of a head folder (see the module docstring)."""
    task = task_module(cfg.task)
    data = cfg.data
    dataset = data.dataset or "every dataset"
    architecture = " ".join(inspect.cleandoc(task.__doc__ or "").split("\n\n")[0].split())
    origin = (f"The pose encoder started from the pre-trained export `{pretrained}`." if pretrained
              else "The pose encoder was trained from scratch.")
    description = "\n\n".join([
        f"An slp model fine-tuned for {TASK_TITLES[cfg.task].lower()} (task `{cfg.task}`). {architecture} "
        f"{sum(p.numel() for p in head.parameters()):,} parameters.",
        _task_summary(cfg, record), origin])
    usage = ("```python\nfrom finetune.export import load_finetuned\n\n"
             'model = load_finetuned("ORG/NAME")  # a Hub repository id or a local folder; model.head is the nn.Module'
             "\n```\n\n```bash\nslp-predict --model ORG/NAME clip.pose --out prediction.json   "
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
    card_data = card_data or {}
    note = f"Fine-tuned on {len(train):,} clips of split `{data.train_split}` of {dataset} (those the task uses)"
    note += ("; the counts below are the manifest's rows of that split in the shards read." if card_data else ".")
    return render_card(TASK_TITLES[cfg.task], description, usage, saved_config(cfg, head),
                       pose_estimator=card_data.get("pose_estimator", ""),
                       training_data=card_data.get("training_data"), training_note=note, metrics=sections,
                       outputs="Predictions",
                       metadata=front_matter(PIPELINE_TAGS.get(cfg.task), ("sign-language-" + cfg.task,), **metadata))


def is_head_folder(path: str | Path) -> bool:
    """A folder holding a head's ``head.json`` and ``model.safetensors`` (:func:`save_finetuned`)."""
    return (Path(path) / HEAD_STATE).is_file() and (Path(path) / WEIGHTS_NAME).is_file()


def read_finetuned_config(directory: str | Path) -> FinetuneConfig:
    """The ``config.json`` of a head folder, its text model resolved to the folder's ``text_model/``."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    try:
        cfg = from_dict(FinetuneConfig, json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, json.JSONDecodeError, ConfigError) as exc:
        raise UserError(f"{path}: not the config of a head folder ({exc})") from None
    if cfg.task in TEXT_MODEL_FIELDS:
        section = getattr(cfg, TEXT_MODEL_FIELDS[cfg.task])
        setattr(cfg, TEXT_MODEL_FIELDS[cfg.task],
                dataclasses.replace(section, text_model=str(directory / section.text_model)))
    return cfg


def head_folder(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The local folder of a head: ``name_or_path`` when it is a folder, else the Hub repository ``name_or_path``
    (at ``revision``) through ``huggingface_hub``'s cache (``HF_HUB_OFFLINE=1``: a repository downloaded before)."""
    directory = Path(name_or_path)
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
    head = task_module(cfg.task).build_head(cfg, SignPoseEncoder(cfg.encoder), [], record["head"])
    load_head_weights(head, directory / WEIGHTS_NAME, record)
    return FinetunedModel(head.to(device or "cpu").eval(), cfg, record, directory)
