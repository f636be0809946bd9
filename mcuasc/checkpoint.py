"""Checkpoints: tensors plus plain data, loaded with torch.load(weights_only=True).

A checkpoint never carries code. A file that would need code to unpickle is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mcuasc.errors import InputError
from mcuasc.frontend import FrontendConfig

FORMAT = "mcuasc.checkpoint/1"


@dataclass
class Checkpoint:
    arch: str
    state_dict: dict[str, torch.Tensor]
    frontend: FrontendConfig
    labels: list[str]
    hparams: dict[str, Any] = field(default_factory=dict)  # model constructor arguments
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "arch": self.arch,
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()},
            "frontend": self.frontend.to_dict(),
            "labels": list(self.labels),
            "hparams": self.hparams,
            "train_config": self.train_config,
            "metrics": self.metrics,
        }

    def build_model(self) -> torch.nn.Module:
        from mcuasc.models import build_model

        model = build_model(self.arch, **self.hparams)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise InputError(f"checkpoint weights do not fit architecture {self.arch!r} ({first}); retrain or pick the right file.") from None
        return model.eval()


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Atomic write: an interrupted save never leaves a half-written checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(checkpoint.to_payload(), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; check the path (mcuasc train writes one).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # junk bytes, not a pickle that names code to run
            raise InputError(f"{path} is not a readable torch checkpoint (corrupt or another format); pass a file written by mcuasc train.") from None
        raise InputError(
            f"{path} needs code to load (a pickled object, not plain tensors and data), so mcuasc refuses to "
            "open it; re-export the weights as a mcuasc checkpoint."
        ) from None
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise InputError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}); pass a file written by mcuasc train.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path} is a torch file but not a mcuasc checkpoint; pass a file written by mcuasc train or distill.")
    try:
        return Checkpoint(
            arch=str(payload["arch"]),
            state_dict=dict(payload["state_dict"]),
            frontend=FrontendConfig.from_dict(payload["frontend"]),
            labels=[str(x) for x in payload["labels"]],
            hparams=dict(payload.get("hparams", {})),
            train_config=dict(payload.get("train_config", {})),
            metrics=dict(payload.get("metrics", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"checkpoint {path} is incomplete (missing or bad {exc}); regenerate it with mcuasc train.") from None
