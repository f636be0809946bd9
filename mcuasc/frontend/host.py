"""Compile the rendered C front end for the host and run it on clips: the `c` implementation.

Builds are cached by a hash of the sources and flags (under $MCUASC_CACHE_DIR or ~/.cache/mcuasc), so
a second build costs nothing. One harness process serves every call of a CFrontend (clips through a pipe).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mcuasc.errors import ToolError
from mcuasc.frontend.c_source import render_frontend
from mcuasc.frontend.config import FrontendConfig
from mcuasc.frontend.integer import check_pcm
from mcuasc.render import banner, render

WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZERS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")


def cache_dir() -> Path:
    return Path(os.environ.get("MCUASC_CACHE_DIR", Path.home() / ".cache" / "mcuasc"))


def harness_sources(cfg: FrontendConfig, frontend_sources: dict[str, str] | None = None) -> dict[str, str]:
    """The front end (as rendered for cfg, or as given, e.g. read from a firmware tree) plus the host main()."""
    sources = dict(frontend_sources or render_frontend(cfg))
    sources["frontend_harness.c"] = render("host/frontend_harness.c.j2", banner=banner("host front-end harness"))
    return sources


def build_harness(
    cfg: FrontendConfig,
    *,
    sanitize: bool = False,
    frontend_sources: dict[str, str] | None = None,
    compiler: str = "gcc",
) -> Path:
    """Compile the harness (cached) and return the executable's path."""
    if shutil.which(compiler) is None:
        raise ToolError(f"the C compiler '{compiler}' is not installed; install gcc (e.g. 'apt-get install gcc').")
    sources = harness_sources(cfg, frontend_sources)
    flags = [*WARNINGS, "-O2", *(SANITIZERS if sanitize else ())]
    key = hashlib.sha256(repr((sorted(sources.items()), flags, compiler)).encode()).hexdigest()[:20]
    target = cache_dir() / "frontend" / key
    exe = target / "frontend_harness"
    if exe.exists():
        return exe
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=target.parent))
    for name, text in sources.items():
        (build / name).write_text(text, encoding="utf-8")
    c_files = sorted(str(build / n) for n in sources if n.endswith(".c"))
    result = subprocess.run(
        [compiler, *flags, "-I", str(build), *c_files, "-o", str(build / "frontend_harness")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ToolError(f"compiling the C front end failed in {build}:\n{result.stderr.strip()}")
    try:
        build.rename(target)  # atomic: parallel builders race harmlessly
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
    return exe


class CFrontend:
    """The rendered C front end, compiled for the host, called like IntegerFrontend. One harness process
    (started on the first call, per OS process) computes every clip: a process start per call would cost as much
    as the front end itself (≈ 8 ms)."""

    def __init__(self, cfg: FrontendConfig, *, sanitize: bool = False, frontend_sources: dict[str, str] | None = None):
        self.cfg = cfg
        self.executable = build_harness(cfg, sanitize=sanitize, frontend_sources=frontend_sources)
        self._process: subprocess.Popen | None = None
        self._owner = 0  # pid that started the process: a forked worker starts its own

    def _harness(self) -> subprocess.Popen:
        if self._process is None or self._owner != os.getpid() or self._process.poll() is not None:
            self._process = subprocess.Popen([str(self.executable), "-", "-"], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self._owner = os.getpid()
        return self._process

    def _failed(self, process: subprocess.Popen) -> ToolError:
        process.kill()
        stderr = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
        self._process = None
        return ToolError(f"the C front end failed (exit {process.wait()}): {stderr}")

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        batched = np.asarray(pcm).ndim == 2
        clips = np.ascontiguousarray(check_pcm(pcm, self.cfg), dtype=np.int16)
        size = int(np.prod(self.cfg.shape))
        process = self._harness()
        features = np.empty((clips.shape[0], size), dtype=np.int8)
        for i, clip in enumerate(clips):
            try:
                process.stdin.write(clip.tobytes())
                process.stdin.flush()
                data = process.stdout.read(size)  # a buffered read returns all `size` bytes unless the harness ended
            except (BrokenPipeError, OSError):
                raise self._failed(process) from None
            if len(data) != size:
                raise self._failed(process)
            features[i] = np.frombuffer(data, dtype=np.int8)
        features = features.reshape(clips.shape[0], *self.cfg.shape)
        return features if batched else features[0]

    def close(self) -> None:
        if self._process is not None and self._owner == os.getpid():
            self._process.stdin.close()
            self._process.wait()
        self._process = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the harness ends with its closed input anyway
            pass
