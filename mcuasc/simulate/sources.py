"""What simulate runs on: WAV files, folders, globs or a TAU split CSV, resolved to clips (with labels when known).

A TAU split (e.g. evaluation_setup/fold1_evaluate.csv) is tab-separated with a `filename` column relative to
the dataset's root and, for train/evaluate splits, a `scene_label` column. Other WAVs get a label only when their
name follows TAU's <scene>-<city>-<id>-<segment>-<device>.wav pattern with a scene the model knows.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mcuasc.errors import InputError

GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class ClipSource:
    path: Path
    label: str | None = None  # the true scene, when known
    device: str | None = None  # TAU recording device (a, b, c, s1–s6), when known


def from_tau_name(path: Path, labels: Sequence[str]) -> ClipSource:
    parts = path.stem.split("-")
    if len(parts) >= 5:
        return ClipSource(path, parts[0] if parts[0] in labels else None, parts[-1])
    return ClipSource(path)


def _dataset_root(csv_path: Path) -> Path:
    folder = csv_path.resolve().parent
    return folder.parent if folder.name == "evaluation_setup" else folder


def from_split_csv(csv_path: Path, labels: Sequence[str]) -> list[ClipSource]:
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {csv_path} ({exc}); pass a tab-separated TAU split such as fold1_evaluate.csv.") from None
    if not rows or "filename" not in rows[0]:
        raise InputError(f"{csv_path} has no 'filename' column (tab-separated); pass a TAU split such as fold1_evaluate.csv.")
    root = _dataset_root(csv_path)
    clips = []
    for line, row in enumerate(rows, start=2):
        filename = (row.get("filename") or "").strip()
        label = (row.get("scene_label") or "").strip() or None
        if label is not None and label not in labels:
            raise InputError(f"{csv_path} line {line} has scene {label!r}, which the model does not know "
                             f"({', '.join(labels)}); pass a split of the model's label set.")
        path = root / filename
        if not path.is_file():
            raise InputError(f"{csv_path} line {line} names {filename}, which is not in {root}; keep the split inside its dataset.")
        clips.append(ClipSource(path, label, from_tau_name(path, labels).device))
    return clips


def _wavs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


def resolve_clips(inputs: Sequence[str | Path], labels: Sequence[str]) -> list[ClipSource]:
    """Every clip the inputs name, in order; an InputError names the first input that names none."""
    if not inputs:
        raise InputError("no audio given; pass a WAV file, a folder, a glob or a TAU split CSV.")
    clips: list[ClipSource] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_file() and path.suffix.lower() == ".csv":
            clips.extend(from_split_csv(path, labels))
        elif path.is_file():
            clips.append(from_tau_name(path, labels))
        elif path.is_dir():
            found = _wavs_in(path)
            if not found:
                raise InputError(f"folder {path} holds no .wav files; pass a folder of WAV clips.")
            clips.extend(from_tau_name(p, labels) for p in found)
        elif GLOB_CHARACTERS & set(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"the pattern {text!r} matches no files; check it (quote it so the shell leaves it alone).")
            clips.extend(from_tau_name(p, labels) for p in found)
        else:
            raise InputError(f"audio input {text} does not exist; pass a WAV file, a folder, a glob or a TAU split CSV.")
    return clips
