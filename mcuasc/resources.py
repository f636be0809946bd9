"""Locate the data that ships with mcuasc: firmware templates and board files.

In a wheel they live in ``mcuasc/_data/``; in a source checkout (editable install) at the repo's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"mcuasc's '{name}' folder is missing from the installation; reinstall mcuasc with 'pip install .'"
    )


def templates_dir() -> Path:
    return _data_dir("firmware_templates")


def boards_dir() -> Path:
    return _data_dir("boards")
