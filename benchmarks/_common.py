"""Shared bits of the benchmark scripts: machine line, timing and Markdown tables."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

# Run as `python benchmarks/NAME.py` from the repo root: make `mcuasc` importable even without an install.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(*extra: str) -> str:
    """One line: CPU model, cores, Python, numpy (and whatever else the script adds)."""
    parts = [f"{cpu_model()} ({os.cpu_count()} cores)", f"Python {platform.python_version()}", f"numpy {np.__version__}", *extra]
    return "machine: " + ", ".join(parts)


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Smallest wall time of `repeats` calls (time.perf_counter), and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def markdown_table(header: list[str], rows: list[list[object]], align: str | None = None) -> str:
    """Markdown table; align is one character per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
