"""The manifest: what convert decided, written once, read by every later stage (gen-firmware, simulate).

Later stages never recompute what is here: the front end's int8 scale and zero point come from the converted
model's input tensor, through `frontend`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mcuasc.errors import InputError
from mcuasc.frontend import FrontendConfig

FORMAT = "mcuasc.manifest/1"
SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class TensorQuantization:
    """real = scale · (q − zero_point), int8."""

    scale: float
    zero_point: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Manifest:
    name: str
    arch: str
    labels: tuple[str, ...]
    frontend: FrontendConfig
    input: TensorQuantization
    output: TensorQuantization
    files: dict[str, str]  # role → file name, relative to the manifest's folder
    ops: tuple[str, ...]  # builtin op of every operator, in execution order
    parameters: int
    macs: int
    flatbuffer_bytes: int
    tflm_arena_bytes: int  # smallest arena the TFLM runtime allocates this model in (host build)
    dcase_limits: dict[str, Any]
    calibration: dict[str, Any]
    fidelity: dict[str, Any]
    layer_sqnr: tuple[dict[str, Any], ...]
    graph: dict[str, Any]
    tools: dict[str, str]
    hashes: dict[str, str]  # role → sha256
    format: str = field(default=FORMAT)

    @property
    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op] = counts.get(op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["frontend"] = self.frontend.to_dict()
        data["op_counts"] = self.op_counts
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise InputError(f"not an mcuasc manifest of format {FORMAT} (found {data.get('format')!r}); rerun mcuasc convert.")
        data = {k: v for k, v in data.items() if k != "op_counts"}
        data["frontend"] = FrontendConfig.from_dict(data["frontend"])
        for key in ("input", "output"):
            q = data[key]
            data[key] = TensorQuantization(float(q["scale"]), int(q["zero_point"]), tuple(q["shape"]))
        for key in ("labels", "ops", "layer_sqnr"):
            data[key] = tuple(data[key])
        return cls(**data)


def manifest_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}{SUFFIX}"


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"manifest {path} does not exist; run mcuasc convert first or pass --manifest.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable manifest ({exc}); rerun mcuasc convert.") from None
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is an incomplete manifest ({exc!r}); rerun mcuasc convert.") from None


def find_manifest(directory: str | Path = ".") -> Path:
    """The one *.manifest.json in `directory` (how gen-firmware and simulate find convert's output)."""
    directory = Path(directory)
    found = sorted(directory.glob(f"*{SUFFIX}"))
    if not found:
        raise InputError(f"no *{SUFFIX} in {directory.resolve()}; run mcuasc convert CHECKPOINT here first, or pass --manifest.")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InputError(f"several manifests in {directory.resolve()} ({names}); pass --manifest to choose one.")
    return found[0]
