"""Boards are data: one YAML file each in boards/, validated here into a frozen Board."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcuasc.errors import InputError
from mcuasc.resources import boards_dir


@dataclass(frozen=True)
class Microphone:
    type: str
    api: str
    sample_rates: tuple[int, ...] | None  # None: any rate (audio from files)

    def can_capture(self, rate: int) -> bool:
        return self.sample_rates is None or rate in self.sample_rates


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    cpu: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    ram_reserved_bytes: int
    flash_reserved_bytes: int
    compiler: str
    compiler_flags: tuple[str, ...]
    microphone: Microphone
    build_system: str  # "zephyr" (west) or "make" (bare metal)
    build_target: str  # what the build system calls the board, e.g. west's -b argument
    console: str
    path: Path


_INT_FIELDS = ("clock_hz", "flash_bytes", "ram_bytes", "ram_reserved_bytes", "flash_reserved_bytes")
_STR_FIELDS = ("name", "description", "cpu", "compiler", "build_system", "build_target", "console")
BUILD_SYSTEMS = ("zephyr", "make")


def parse_board(data: Any, path: Path) -> Board:
    """Validate one board file's content; every problem is reported with the file and the key."""

    def bad(what: str) -> InputError:
        return InputError(f"board file {path}: {what}; fix the file (see boards/nrf52840.yaml for the format).")

    if not isinstance(data, dict):
        raise bad("the top level must be a mapping")
    known = {*_INT_FIELDS, *_STR_FIELDS, "compiler_flags", "microphone"}
    if missing := sorted(known - set(data)):
        raise bad(f"missing keys {missing}")
    if unknown := sorted(set(data) - known):
        raise bad(f"unknown keys {unknown}")
    for key in _INT_FIELDS:
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
            raise bad(f"'{key}' must be a non-negative integer")
    for key in _STR_FIELDS:
        if not isinstance(data[key], str) or not data[key]:
            raise bad(f"'{key}' must be a non-empty string")
    if data["build_system"] not in BUILD_SYSTEMS:
        raise bad(f"'build_system' must be one of {', '.join(BUILD_SYSTEMS)}")
    flags = data["compiler_flags"]
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise bad("'compiler_flags' must be a list of strings")
    mic = data["microphone"]
    if not isinstance(mic, dict) or set(mic) != {"type", "api", "sample_rates"}:
        raise bad("'microphone' must have exactly the keys type, api and sample_rates")
    rates = mic["sample_rates"]
    if rates == "any":
        rates = None
    elif not (isinstance(rates, list) and rates and all(isinstance(r, int) and r > 0 for r in rates)):
        raise bad("'microphone.sample_rates' must be a list of positive integers or 'any'")
    if data["name"] != path.stem:
        raise bad(f"'name' is {data['name']!r} but the file is named {path.name}")
    return Board(
        **{k: data[k] for k in (*_INT_FIELDS, *_STR_FIELDS)},
        compiler_flags=tuple(flags),
        microphone=Microphone(str(mic["type"]), str(mic["api"]), None if rates is None else tuple(rates)),
        path=path,
    )


def load_board_file(path: Path) -> Board:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"board file {path} is not valid YAML ({exc.__class__.__name__}); fix its syntax.") from None
    return parse_board(data, path)


def board_names() -> list[str]:
    return sorted(p.stem for p in boards_dir().glob("*.yaml"))


def load_board(name: str) -> Board:
    path = boards_dir() / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"unknown board {name!r}; choose one of {', '.join(board_names())} (mcuasc boards lists them).")
    return load_board_file(path)
