"""Reader for the TAU Urban Acoustic Scenes 2022 Mobile development-set layout.

    meta.csv                            filename, scene_label, identifier, source_label (tab-separated)
    evaluation_setup/fold1_train.csv    filename, scene_label
    evaluation_setup/fold1_evaluate.csv filename, scene_label
    evaluation_setup/fold1_test.csv     filename
    audio/<scene>-<city>-<id>-<segment>-<device>.wav
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mcuasc.errors import InputError

LABEL_SETS = Path(__file__).parent / "labels"
SPLITS = {"train": "fold1_train.csv", "evaluate": "fold1_evaluate.csv", "test": "fold1_test.csv"}


def load_labels(name: str = "tau2022") -> list[str]:
    """A label set (one label a line, in the paper's order) from mcuasc/data/labels/."""
    path = LABEL_SETS / f"{name}.txt"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in LABEL_SETS.glob("*.txt")))
        raise InputError(f"unknown label set {name!r}; choose one of {known}.")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Clip:
    path: Path
    filename: str  # as meta.csv names it, e.g. audio/airport-lisbon-1000-40000-a.wav
    label: str
    label_index: int
    device: str
    city: str
    identifier: str


def _read_tsv(path: Path, required: list[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
            header = rows[0].keys() if rows else []
    except FileNotFoundError:
        raise InputError(f"{path} is missing; a TAU-layout dataset needs it (mcuasc synth-data writes one).") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path} ({exc}); it must be a tab-separated text file.") from None
    if rows and not set(required) <= set(header):
        raise InputError(f"{path} needs tab-separated columns {required}, found {list(header)}; fix its header.")
    return rows


def parse_filename(filename: str) -> tuple[str, str, str]:
    """(city, identifier, device) from <scene>-<city>-<id>-<segment>-<device>.wav."""
    parts = Path(filename).stem.split("-")
    if len(parts) < 5:
        raise InputError(f"audio file name {filename!r} is not <scene>-<city>-<id>-<segment>-<device>.wav; rename it.")
    return parts[-4], parts[-3], parts[-1]


class TauDataset:
    def __init__(self, root: Path, clips: dict[str, Clip], labels: list[str]):
        self.root = root
        self.clips = clips
        self.labels = labels

    @classmethod
    def open(cls, root: str | Path, label_set: str = "tau2022") -> TauDataset:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"dataset folder {root} does not exist; pass a TAU-layout folder (mcuasc synth-data makes one).")
        labels = load_labels(label_set)
        index = {label: i for i, label in enumerate(labels)}
        clips: dict[str, Clip] = {}
        for line, row in enumerate(_read_tsv(root / "meta.csv", ["filename", "scene_label"]), start=2):
            filename, label = (row.get("filename") or "").strip(), (row.get("scene_label") or "").strip()
            if not filename or not label:
                raise InputError(f"{root / 'meta.csv'} line {line} lacks a filename or scene_label; fix that row.")
            if label not in index:
                raise InputError(f"{root / 'meta.csv'} line {line} has unknown scene {label!r}; the labels are {', '.join(labels)}.")
            city, identifier, device = parse_filename(filename)
            source = (row.get("source_label") or device).strip()
            clips[filename] = Clip(root / filename, filename, label, index[label], source, city,
                                   (row.get("identifier") or identifier).strip())
        missing = [c.filename for c in clips.values() if not c.path.is_file()]
        if missing:
            raise InputError(f"{len(missing)} audio files listed in meta.csv are missing, the first {missing[0]}; restore them.")
        return cls(root, clips, labels)

    def split(self, name: str) -> list[Clip]:
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        path = self.root / "evaluation_setup" / SPLITS[name]
        rows = _read_tsv(path, ["filename"])
        unknown = [r["filename"] for r in rows if r.get("filename") not in self.clips]
        if unknown:
            raise InputError(f"{path} names {len(unknown)} files absent from meta.csv, the first {unknown[0]}; fix the split.")
        return [self.clips[r["filename"]] for r in rows]

    @property
    def devices(self) -> list[str]:
        return sorted({c.device for c in self.clips.values()}, key=lambda d: (len(d), d))

    def device_breakdown(self, split: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for clip in self.split(split):
            counts[clip.device] = counts.get(clip.device, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (len(kv[0]), kv[0])))
