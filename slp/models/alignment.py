"""Sign-text alignment, shared by pre-training (L_STC) and the retrieval head: projectors, clip pooling, the
fine-grained (or coarse) similarity and the symmetric InfoNCE over the global batch (paper eq. 3-5, SPEC §4).

F_sign = MLP(AvgPool_s(F_SE)) (n clips of s frames) and F_text = MLP(F_TE) (m tokens), both in d_e; clip i and
text j score m_ij (:func:`slp.losses.contrastive.fine_grained_similarity`), and the loss is the symmetric InfoNCE
at a learnable τ whose negatives are every other pair of the global batch, every rank's
(:func:`slp.losses.contrastive.global_infonce`).

Pre-training exports the module beside the encoder (:meth:`SignTextAlignment.save_pretrained`: ``alignment.safetensors``
and ``alignment_config.json`` in the encoder's ``save_pretrained`` folder, and ``text_model/`` when the text encoder
was a local folder), and the retrieval head starts from it (:meth:`SignTextAlignment.from_pretrained`).
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from slp.config import from_dict
from slp.losses.contrastive import LearnableTemperature, coarse_similarity, fine_grained_similarity, global_infonce
from slp.models.model_card import text_model_reference

ALIGNMENT_CONFIG_NAME = "alignment_config.json"
ALIGNMENT_WEIGHTS_NAME = "alignment.safetensors"
#: Where an export holds a copy of a local text encoder, and how ``alignment_config.json`` names it: relative to the
#: export's folder ("./", which no Hub repository id starts with), so that it loads from wherever the folder is.
ALIGNMENT_TEXT_MODEL_DIR = "text_model"
_TEXT_MODEL_IN_EXPORT = f"./{ALIGNMENT_TEXT_MODEL_DIR}"


def same_text_model(a: str, b: str) -> bool:
    """Whether the text model references ``a`` and ``b`` name the same text encoder: the same name, or two local
    folders holding the same files (an export's copy and the folder it was copied from)."""
    if a == b:
        return True
    first, second = Path(a), Path(b)
    if not (first.is_dir() and second.is_dir()):
        return False
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file()) and all(
        filecmp.cmp(first / f, second / f, shallow=False) for f in files)


@dataclass
class AlignmentConfig:
    embed_dim: int = 512  # d_e
    pool_window: int = 4  # s: frames averaged into one sign clip (Table XVI)
    similarity: Literal["fine", "coarse"] = "fine"  # Table XVIII
    temperature_init: float = 0.07
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    chunk_size: int = 32  # sign samples per block of the fine-grained matrix (bounds its memory)


class ProjectionMLP(nn.Module):
    """Two-layer MLP projector."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def average_pool_clips(features: torch.Tensor, frame_mask: torch.Tensor, window: int):
    """AvgPool_s over valid frames: ``(B, T, D)`` → clips ``(B, ceil(T / s), D)`` and their validity mask."""
    b, t, d = features.shape
    pad = (-t) % window
    feats = F.pad(features * frame_mask[..., None], (0, 0, 0, pad)).reshape(b, -1, window, d)
    counts = F.pad(frame_mask.to(features.dtype), (0, pad)).reshape(b, -1, window).sum(dim=-1)
    return feats.sum(dim=2) / counts.clamp(min=1)[..., None], counts > 0


class SignTextAlignment(nn.Module):
    """Projects sign features ``(B, T, sign_dim)`` and text features ``(B, m, text_dim)`` into d_e and aligns them."""

    def __init__(self, sign_dim: int, text_dim: int, cfg: AlignmentConfig):
        super().__init__()
        if cfg.similarity not in ("fine", "coarse"):
            raise ValueError(f"similarity {cfg.similarity!r} is not 'fine' or 'coarse'")
        self.cfg = cfg
        self.sign_dim, self.text_dim = sign_dim, text_dim
        self.sign_projector = ProjectionMLP(sign_dim, cfg.embed_dim)
        self.text_projector = ProjectionMLP(text_dim, cfg.embed_dim)
        self.temperature = LearnableTemperature(cfg.temperature_init, cfg.min_temperature, cfg.max_temperature)

    def sign_embeddings(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F_sign ``(B, n, d_e)`` and its clip mask ``(B, n)``."""
        clips, clip_mask = average_pool_clips(features, frame_mask, self.cfg.pool_window)
        return self.sign_projector(clips), clip_mask

    def text_embeddings(self, text_features: torch.Tensor) -> torch.Tensor:
        """F_text ``(B, m, d_e)``."""
        return self.text_projector(text_features)

    def similarity(self, sign: torch.Tensor, sign_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                   chunk_size: int | None = None) -> torch.Tensor:
        """``(B, C)`` scores of B clips' embeddings against C texts' (fine: in blocks of ``chunk_size`` clips)."""
        if self.cfg.similarity == "coarse":
            return coarse_similarity(sign, sign_mask, text, text_mask)
        return fine_grained_similarity(sign, sign_mask, text, text_mask, chunk_size)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, text_features: torch.Tensor,
                text_mask: torch.Tensor, paired: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, value)`` of the symmetric InfoNCE over the paired samples of the global batch.

        ``loss`` is this rank's share, scaled so that averaging the ranks' gradients (DDP, DeepSpeed) gives the
        gradient of the global batch's loss; ``value`` is that loss, detached, the same on every rank.
        ``paired (B,)`` (None: every sample) marks the samples with a text; the others take no part.
        """
        sign, sign_mask = self.sign_embeddings(features, frame_mask)
        text = self.text_embeddings(text_features)
        if paired is None:
            paired = torch.ones(sign.shape[0], dtype=torch.bool, device=sign.device)

        def similarity(s, sm, t, tm):
            return self.similarity(s, sm, t, tm, self.cfg.chunk_size)

        return global_infonce(similarity, self.temperature(), sign, sign_mask, text, text_mask.bool(), paired)

    def save_pretrained(self, directory: str | Path, *, text_model: str) -> Path:
        """Write ``alignment.safetensors`` (the sign and text projectors and log τ) and ``alignment_config.json``
        (the input widths, ``text_model``: the text encoder whose features the text projector was trained on, and
        the :class:`AlignmentConfig`) into ``directory``, beside the files of an encoder export.

        A ``text_model`` that is a local folder is copied into ``directory/text_model/`` and recorded as
        ``./text_model``, so the export is whole wherever it is moved or uploaded (:meth:`from_pretrained` gives
        the copy's path); a Hub repository id (any other string) is recorded as it is."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  directory / ALIGNMENT_WEIGHTS_NAME)
        copy = directory / ALIGNMENT_TEXT_MODEL_DIR
        local = Path(text_model).is_dir()
        if not (local and Path(text_model).resolve() == copy.resolve()):  # (an export's own copy stays)
            remove_text_model_copy(directory)
            if local:
                shutil.copytree(text_model, copy)
        config = {"sign_dim": self.sign_dim, "text_dim": self.text_dim,
                  "text_model": _TEXT_MODEL_IN_EXPORT if local else text_model,
                  "alignment": dataclasses.asdict(self.cfg)}
        (directory / ALIGNMENT_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *,
                        revision: str | None = None) -> tuple[SignTextAlignment, str] | None:
        """The module :meth:`save_pretrained` wrote into a folder or a Hugging Face Hub repository (as
        :meth:`SignPoseEncoder.from_pretrained <slp.models.sign_encoder.SignPoseEncoder.from_pretrained>` reads
        them) and the ``text_model`` it was trained against (the path of the export's ``text_model/`` when it holds
        a copy); None when there is none (an encoder exported alone)."""
        directory = Path(name_or_path)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=[
                ALIGNMENT_CONFIG_NAME, ALIGNMENT_WEIGHTS_NAME, f"{ALIGNMENT_TEXT_MODEL_DIR}/*"]))
        if not (directory / ALIGNMENT_CONFIG_NAME).is_file():
            return None
        saved = json.loads((directory / ALIGNMENT_CONFIG_NAME).read_text())
        cfg = from_dict(AlignmentConfig, saved["alignment"], str(directory / ALIGNMENT_CONFIG_NAME))
        module = cls(saved["sign_dim"], saved["text_dim"], cfg)
        module.load_state_dict(load_file(directory / ALIGNMENT_WEIGHTS_NAME))
        text_model = saved["text_model"]
        if text_model == _TEXT_MODEL_IN_EXPORT:
            text_model = str(directory / ALIGNMENT_TEXT_MODEL_DIR)
        return module, text_model

    def model_card_section(self, text_model: str) -> str:
        """The section of the encoder's model card that describes this module's files (``text_model`` as
        :meth:`save_pretrained` was given it; a local folder is not named, the export holding its copy)."""
        c = self.cfg
        if Path(text_model).is_dir():
            text_model = (f"a local text model (copied into `{ALIGNMENT_TEXT_MODEL_DIR}/`: `SignTextAlignment."
                          "from_pretrained` gives its path)")
        else:
            text_model = text_model_reference(text_model)
        return (
            "## Sign-text alignment module\n\n"
            f"`{ALIGNMENT_WEIGHTS_NAME}` and `{ALIGNMENT_CONFIG_NAME}` hold what the sign-text contrastive objective "
            "learnt beside the encoder (`slp.models.alignment.SignTextAlignment`): the sign projector "
            f"(`AvgPool_{c.pool_window}` clips of the encoder's {self.sign_dim}-d features → {c.embed_dim}-d), the "
            f"text projector ({self.text_dim}-d features of {text_model} → {c.embed_dim}-d) and "
            f"the temperature τ = {self.temperature().item():.4g}, with {c.similarity}-grained similarity. "
            "`slp-finetune --task retrieval --pretrained` starts the retrieval head from them; the text projector "
            "fits the features of that text encoder only.\n\n"
            "```python\nfrom slp.models.alignment import SignTextAlignment\n\n"
            'alignment, text_model = SignTextAlignment.from_pretrained("ORG/NAME")\n```'
        )


def remove_text_model_copy(directory: str | Path) -> None:
    """Remove the ``text_model/`` copy an earlier export left in ``directory``."""
    shutil.rmtree(Path(directory) / ALIGNMENT_TEXT_MODEL_DIR, ignore_errors=True)
