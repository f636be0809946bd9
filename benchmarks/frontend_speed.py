"""Host speed of the front ends on the same one-second clips: integer numpy, C, float64 reference, librosa.

    .venv/bin/python benchmarks/frontend_speed.py [--clips 200] [--repeats 3]

Goal (issue 2): the integer numpy path is not slower than librosa's float log-mel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import machine, markdown_table
from mcuasc.frontend import FloatFrontend, IntegerFrontend, preset
from mcuasc.frontend.host import CFrontend
from mcuasc.testsignals import realistic_corpus


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def librosa_features(librosa, pcm: np.ndarray, cfg) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=pcm.astype(np.float32) / 32768.0, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window=cfg.window, center=True, pad_mode="constant", power=float(cfg.power),
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.mel_scale == "htk",
        norm=None if cfg.mel_norm == "none" else "slaney",
    )
    db_scale = 20.0 / cfg.power
    db = db_scale * np.log10(np.maximum(mel, 10 ** (cfg.log_floor_db / db_scale)))
    if cfg.deltas:
        d1 = librosa.feature.delta(db, width=cfg.delta_width, axis=-1)
        d2 = librosa.feature.delta(db, width=cfg.delta_width, order=2, axis=-1)
        db = np.stack([db, d1, d2], axis=-1)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=["bcresnet", "mobilenetv2", "dcase-baseline"])
    args = parser.parse_args()
    import librosa

    print(f"# Front-end speed on the host: {args.clips} one-second clips, best of {args.repeats}")
    print(f"machine: {machine()}, librosa {librosa.__version__}\n")
    for name in args.presets:
        cfg = preset(name)
        pcm = np.stack(list(realistic_corpus(cfg.clip_samples, cfg.sample_rate, seed=11, count=args.clips).values()))
        integer, reference, c = IntegerFrontend(cfg), FloatFrontend(cfg), CFrontend(cfg)  # C compiled here, untimed
        librosa_features(librosa, pcm[0], cfg)  # numba JIT warm-up
        timings = {
            "integer numpy, batched": best_of(args.repeats, lambda: integer(pcm)),
            "integer numpy, one clip at a time": best_of(args.repeats, lambda: [integer(x) for x in pcm]),
            "C on the host (-O2, one process)": best_of(args.repeats, lambda: c(pcm)),
            "float64 reference, batched": best_of(args.repeats, lambda: reference(pcm)),
            "librosa, batched": best_of(args.repeats, lambda: librosa_features(librosa, pcm, cfg)),
            "librosa, one clip at a time": best_of(args.repeats, lambda: [librosa_features(librosa, x, cfg) for x in pcm]),
        }
        baseline = timings["librosa, one clip at a time"]
        rows = [[impl, f"{t / args.clips * 1e3:.2f}", f"{args.clips / t:.0f}", f"{baseline / t:.2f}×"] for impl, t in timings.items()]
        print(f"## {name} ({'×'.join(map(str, cfg.shape))})\n")
        print(markdown_table(["implementation", "ms / clip", "clips / s", "speed vs librosa (per clip)"], rows))
        ratio = timings["librosa, batched"] / timings["integer numpy, batched"]
        print(f"\ninteger numpy batched vs librosa batched: {ratio:.2f}× ({'not slower: goal met' if ratio >= 1 else 'SLOWER than librosa'})")
        ours = reference.log_mel_db(pcm[:20])
        theirs = np.stack([librosa_features(librosa, x, cfg)[..., 0] if cfg.deltas else librosa_features(librosa, x, cfg) for x in pcm[:20]])
        within = theirs >= theirs.max(axis=(1, 2), keepdims=True) - 60
        print(f"sanity: float reference vs librosa, max |Δ| = {np.abs(ours - theirs)[within].max():.2e} dB (bins within 60 dB of each clip's max)\n")


if __name__ == "__main__":
    main()
