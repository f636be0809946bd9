"""Shared test helpers. In CI (CI=true) a missing tool fails the test: CI must not skip whole areas."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(tool: str, apt_package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install {apt_package})"
        if IN_CI:
            pytest.fail(f"{message}: .ci/run must install it")
        pytest.skip(message)
    return path


def mcuasc_command() -> list[str]:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).parent / "mcuasc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcuasc.cli"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Compile C into a per-session cache, never the user's."""
    monkeypatch.setenv("MCUASC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mcuasc-cache"))
