"""Using the front end from Python (a notebook would do the same): every CLI command is a library call.

    .venv/bin/python examples/frontend_from_python.py [AUDIO.wav]

Reads a clip (or synthesizes one), computes its features three ways, and shows the integer numpy path and
the C front end, compiled for this host, agree bit for bit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from mcuasc.audio import fit_to_clip, read_wav, write_wav
from mcuasc.demo import street_scene
from mcuasc.frontend import FloatFrontend, IntegerFrontend, preset
from mcuasc.frontend.c_source import write_frontend
from mcuasc.frontend.host import CFrontend

cfg = preset("mobilenetv2")
if len(sys.argv) > 1:
    path = Path(sys.argv[1])
else:
    path = Path(tempfile.mkdtemp()) / "street.wav"
    write_wav(path, street_scene(), 44100, bits=24)

audio = read_wav(path, cfg.sample_rate)  # any WAV: resampled and downmixed as needed, each step in audio.notes
pcm, note = fit_to_clip(audio.samples, cfg.clip_samples)
for line in (*audio.notes, note):
    if line:
        print("note:", line)

reference = FloatFrontend(cfg)(pcm)  # float32 dB: what a model is trained on
features = IntegerFrontend(cfg)(pcm)  # int8: what the device computes
on_host = CFrontend(cfg)(pcm)  # the rendered C, compiled with gcc and run

print("shape", features.shape, "(mels × frames × channels)")
print("numpy == C:", np.array_equal(features, on_host))
dequantized = (features.astype(np.float32) - cfg.output_zero_point) * cfg.output_scale
print(f"int8 vs float, log-mel channel: max |Δ| = {np.abs(dequantized - reference)[..., 0].max():.3f} dB "
      f"(int8 step {cfg.output_scale:.3f} dB)")

out = Path(tempfile.mkdtemp()) / "frontend_c"
write_frontend(cfg, out)  # the same C sources a firmware tree gets
print("C sources written to", out, ":", ", ".join(sorted(p.name for p in out.iterdir())))
