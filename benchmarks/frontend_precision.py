"""Precision of the integer front end against the float64 reference, in dB before int8 quantization.

    .venv/bin/python benchmarks/frontend_precision.py [--clips 60] [--seed 1]

Per preset: IntegerFrontend.log_mel_db vs FloatFrontend.log_mel_db on realistic_corpus(count=clips, seed=seed),
over the bins within 60 dB of each clip's maximum (the float reference's maximum, per clip).
Goal (issue 2): mean |error| ≤ 0.1 dB and 99th percentile ≤ 0.5 dB. Then the same comparison on every signal
of the hostile corpus (max |error| only; signals whose reference is all at the floor are left out).
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import machine, markdown_table
from mcuasc.frontend import PRESETS, FloatFrontend, IntegerFrontend, preset
from mcuasc.testsignals import hostile_corpus, realistic_corpus

GOAL_MEAN_DB, GOAL_P99_DB, RANGE_DB = 0.1, 0.5, 60.0


def errors_in_range(measured: np.ndarray, reference: np.ndarray) -> list[np.ndarray]:
    """Per clip: |measured − reference| over the bins within RANGE_DB of that clip's reference maximum."""
    return [np.abs(m - r)[r >= r.max() - RANGE_DB] for m, r in zip(measured, reference)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=60, help="realistic clips per preset (default 60)")
    parser.add_argument("--seed", type=int, default=1, help="realistic_corpus seed (default 1)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()

    print(f"# Integer vs float64 log-mel (dB, before int8 quantization), bins within {RANGE_DB:g} dB of each clip's max\n")
    print(machine() + "\n")
    rows, hostile, signals, floor_ok = [], {}, [], True
    for name in args.presets:
        cfg = preset(name)
        integer, reference = IntegerFrontend(cfg), FloatFrontend(cfg)
        pcm = np.stack(list(realistic_corpus(cfg.clip_samples, cfg.sample_rate, seed=args.seed, count=args.clips).values()))
        error = np.concatenate(errors_in_range(integer.log_mel_db(pcm), reference.log_mel_db(pcm)))
        mean, p99 = error.mean(), np.percentile(error, 99)
        verdict = "PASS" if mean <= GOAL_MEAN_DB and p99 <= GOAL_P99_DB else "FAIL"
        rows.append([name, args.clips, error.size, f"{mean:.5f}", f"{p99:.4f}", f"{error.max():.4f}", verdict])

        clips = hostile_corpus(cfg.clip_samples, cfg.sample_rate)
        pcm = np.stack(list(clips.values()))
        signals += [s for s in clips if s not in signals]
        measured, ref = integer.log_mel_db(pcm), reference.log_mel_db(pcm)
        for signal, err, m, r in zip(clips, errors_in_range(measured, ref), measured, ref):
            if r.max() > cfg.log_floor_db:  # some bin above the floor
                hostile.setdefault(signal, {})[name] = f"{err.max():.4f}"
            else:
                floor_ok &= bool(np.all(np.abs(m - cfg.log_floor_db) < 1e-3))  # floor held in Q16: −100.00001 dB

    print(f"## Realistic clips (realistic_corpus seed {args.seed}), goal: mean ≤ {GOAL_MEAN_DB} dB, p99 ≤ {GOAL_P99_DB} dB\n")
    print(markdown_table(
        ["preset", "clips", "bins compared", "mean abs err (dB)", "p99 (dB)", "max (dB)", "goal"], rows, "lrrrrrl"))

    print(f"\n## Hostile corpus: max abs error per signal (dB, bins within {RANGE_DB:g} dB of the signal's max)\n")
    hostile_rows = [[signal, *(per.get(name, "all at floor") for name in args.presets)] for signal, per in hostile.items()]
    print(markdown_table(["signal", *args.presets], hostile_rows))
    left_out = [s for s in signals if s not in hostile]
    if left_out:
        print(f"\nleft out (reference entirely at the log_floor_db floor for every preset): {', '.join(left_out)}; "
              f"integer output there also entirely at the (Q16-rounded) floor: {'yes' if floor_ok else 'NO'}")


if __name__ == "__main__":
    main()
