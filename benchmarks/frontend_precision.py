"""Precision of the integer front end against the float64 reference, in dB before int8 quantization.

    .venv/bin/python benchmarks/frontend_precision.py [--clips 60]

Over bins within 60 dB of each clip's maximum. Goal (issue 2): mean |error| ≤ 0.1 dB, 99th percentile ≤ 0.5 dB.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import machine, markdown_table
from mcuasc.frontend import PRESETS, FloatFrontend, IntegerFrontend
from mcuasc.testsignals import hostile_corpus, realistic_corpus


def errors_within_60db(measured: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.concatenate([np.abs(m - r)[r >= r.max() - 60.0] for m, r in zip(measured, reference)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=60)
    args = parser.parse_args()
    print(f"# Integer vs float64 log-mel, {args.clips} realistic clips per preset\nmachine: {machine()}\n")
    rows, hostile_rows = [], []
    for name, cfg in PRESETS.items():
        pcm = np.stack(list(realistic_corpus(cfg.clip_samples, cfg.sample_rate, seed=1, count=args.clips).values()))
        error = errors_within_60db(IntegerFrontend(cfg).log_mel_db(pcm), FloatFrontend(cfg).log_mel_db(pcm))
        mean, p99 = error.mean(), np.percentile(error, 99)
        verdict = "PASS" if mean <= 0.1 and p99 <= 0.5 else "FAIL"
        rows.append([name, error.size, f"{mean:.5f}", f"{p99:.5f}", f"{error.max():.4f}", verdict])
        clips = hostile_corpus(cfg.clip_samples, cfg.sample_rate)
        pcm = np.stack(list(clips.values()))
        measured, reference = IntegerFrontend(cfg).log_mel_db(pcm), FloatFrontend(cfg).log_mel_db(pcm)
        for clip, m, r in zip(clips, measured, reference):
            if r.max() > cfg.log_floor_db:
                hostile_rows.append([name, clip, f"{np.abs(m - r)[r >= r.max() - 60.0].max():.4f}"])
    print(markdown_table(["preset", "bins compared", "mean abs err dB", "p99 dB", "max dB", "goal (≤ 0.1 / ≤ 0.5)"], rows))
    print("\n## Hostile corpus: max abs error per signal, dB (bins within 60 dB of the clip's max)\n")
    print(markdown_table(["preset", "signal", "max abs err dB"], hostile_rows))


if __name__ == "__main__":
    main()
