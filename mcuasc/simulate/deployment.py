"""What is deployed, as simulate finds it: the manifest, the int8 flatbuffer it describes, and the C front end
exactly as the firmware gets it (read from a generated firmware folder, or rendered from the manifest).

Nothing is recomputed here: the front-end config, labels, quantization and arena come from the manifest.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from mcuasc.convert.manifest import SUFFIX, Manifest, find_manifest, load_manifest
from mcuasc.errors import InputError
from mcuasc.frontend.c_source import SOURCES as FRONTEND_SOURCES
from mcuasc.frontend.c_source import config_digest, render_frontend

CONFIG_DIGEST = re.compile(r"config sha256 ([0-9a-f]{16})")


@dataclass(frozen=True)
class Deployment:
    manifest: Manifest
    manifest_path: Path
    model_path: Path
    flatbuffer: bytes
    frontend_sources: dict[str, str]  # file name → C source, as compiled on the host and on the device
    frontend_origin: str  # where those sources came from, for the report

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels


def _manifest_for_model(model: Path) -> Path:
    """The manifest beside `model` that names it as its int8 flatbuffer."""
    for candidate in sorted(model.parent.glob(f"*{SUFFIX}")):
        try:
            if load_manifest(candidate).files.get("tflite") == model.name:
                return candidate
        except InputError:
            continue
    raise InputError(f"no manifest beside {model} describes it; pass --manifest (mcuasc convert writes NAME{SUFFIX}).")


def firmware_frontend_sources(firmware_dir: Path) -> dict[str, str]:
    """The front end's four files from a generated firmware folder (wherever in it they were written)."""
    if not firmware_dir.is_dir():
        raise InputError(f"firmware folder {firmware_dir} does not exist; pass the folder mcuasc gen-firmware wrote.")
    sources = {}
    for name in FRONTEND_SOURCES:
        found = sorted(firmware_dir.rglob(name))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} copies of"
            raise InputError(f"{firmware_dir} holds {what} {name}; pass the folder mcuasc gen-firmware wrote.")
        sources[name] = found[0].read_text(encoding="utf-8")
    return sources


def load_deployment(*, manifest: str | Path | None = None, model: str | Path | None = None,
                    firmware: str | Path | None = None, directory: str | Path = ".") -> Deployment:
    """Resolve what to simulate: --manifest, else the manifest that names --model, else the one in `directory`."""
    model_path = Path(model) if model is not None else None
    if model_path is not None and not model_path.is_file():
        raise InputError(f"model {model_path} does not exist; pass the NAME_int8.tflite that mcuasc convert wrote.")
    if manifest is not None:
        manifest_path = Path(manifest)
    elif model_path is not None:
        manifest_path = _manifest_for_model(model_path)
    else:
        manifest_path = find_manifest(directory)
    m = load_manifest(manifest_path)
    if model_path is None:
        model_path = manifest_path.parent / m.files["tflite"]
        if not model_path.is_file():
            raise InputError(f"{manifest_path} names {m.files['tflite']}, which is missing; rerun mcuasc convert or pass --model.")
    flatbuffer = model_path.read_bytes()
    expected = m.hashes.get("tflite")
    if expected and hashlib.sha256(flatbuffer).hexdigest() != expected:
        raise InputError(f"{model_path} is not the model {manifest_path.name} describes (its sha256 differs); "
                         "pass the matching --manifest or rerun mcuasc convert.")
    if firmware is not None:
        sources = firmware_frontend_sources(Path(firmware))
        digests = set(CONFIG_DIGEST.findall(sources["mcuasc_frontend.h"]))
        if digests and digests != {config_digest(m.frontend)}:
            raise InputError(f"the front end in {firmware} was rendered for another config (sha256 {', '.join(sorted(digests))}, "
                             f"the manifest's is {config_digest(m.frontend)}); regenerate it with mcuasc gen-firmware.")
        origin = f"firmware {firmware}"
    else:
        sources = render_frontend(m.frontend)
        origin = f"rendered from {manifest_path.name}"
    return Deployment(m, manifest_path, model_path, flatbuffer, sources, origin)
