"""Renders the C front end from firmware_templates/common/frontend with the numpy path's own tables.

simulate compiles what this returns and gen-firmware writes it into the firmware tree: one function,
so the front end on the device is the one the host checked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mcuasc.frontend.config import FrontendConfig
from mcuasc.frontend.tables import LOG2_TABLE_BITS, NORMALISED_BITS, SPECTRUM_BITS, TWIDDLE_BITS, build_tables
from mcuasc.render import banner, render

TEMPLATE_DIR = "common/frontend"
SOURCES = ("mcuasc_frontend.h", "mcuasc_frontend_tables.h", "mcuasc_frontend_tables.c", "mcuasc_frontend.c")
CHANNEL_NAMES = ("LOG_MEL", "DELTA", "DELTA2")


def config_digest(cfg: FrontendConfig) -> str:
    return hashlib.sha256(cfg.to_json().encode()).hexdigest()[:16]


def render_frontend(cfg: FrontendConfig) -> dict[str, str]:
    """File name → C source of the front end for cfg."""
    t = build_tables(cfg)
    context = {
        "cfg": cfg,
        "t": t,
        "window": t.window_q15[t.window_start : t.window_stop],
        "banner": banner(f"for front end '{cfg.name}' (config sha256 {config_digest(cfg)})"),
        "channel_names": CHANNEL_NAMES[: cfg.n_channels],
        "log2_table_bits": LOG2_TABLE_BITS,
        "normalised_bits": NORMALISED_BITS,
        "spectrum_bits": SPECTRUM_BITS,
        "twiddle_bits": TWIDDLE_BITS,
        "split_twiddles": t.twiddle_q30[: cfg.n_fft // 4 + 1],  # the C mirrors the rest
        "fft_twiddles": t.fft_twiddle_q30.reshape(-1, 6),
    }
    return {name: render(f"{TEMPLATE_DIR}/{name}.j2", **context) for name in SOURCES}


def write_frontend(cfg: FrontendConfig, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_frontend(cfg).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
