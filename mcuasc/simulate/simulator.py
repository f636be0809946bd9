"""Stage 5, simulate: WAV → integer front end (numpy and the compiled C) → int8 model on TFLite's reference
kernels and on the TFLM runtime; every pair compared byte for byte.

A Simulator is built once per process (front ends, both interpreters) and then run clip after clip;
`simulate_many` spreads clips over processes, each with its own Simulator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from mcuasc.audio import fit_to_clip, read_wav
from mcuasc.convert import analysis
from mcuasc.errors import InputError
from mcuasc.frontend import IntegerFrontend
from mcuasc.frontend.host import CFrontend
from mcuasc.simulate.deployment import Deployment
from mcuasc.simulate.localise import FeatureDivergence, OperatorComparer, OperatorDivergence, first_feature_difference
from mcuasc.simulate.sources import ClipSource

STAGES = ("read", "frontend_numpy", "frontend_c", "tflite_ref", "tflm", "compare")


@dataclass(frozen=True)
class SimulateOptions:
    hop_seconds: float | None = None  # between windows of audio longer than one clip; None: one clip length
    localise: bool = True  # on a mismatch, find the first divergent feature / operator


@dataclass(frozen=True)
class WindowResult:
    start_seconds: float
    logits_reference: np.ndarray  # int8, TFLite with reference kernels (on the numpy front end's features)
    logits_tflm: np.ndarray  # int8, the TFLM runtime (same features)
    features_bit_exact: bool  # numpy front end == C front end
    feature_divergence: FeatureDivergence | None = None
    operator_divergence: OperatorDivergence | None = None

    @property
    def logits_bit_exact(self) -> bool:
        return bool(np.array_equal(self.logits_reference, self.logits_tflm))

    @property
    def bit_exact(self) -> bool:
        return self.features_bit_exact and self.logits_bit_exact


@dataclass(frozen=True)
class ClipResult:
    source: ClipSource
    labels: tuple[str, ...]
    output_scale: float
    output_zero_point: int
    windows: tuple[WindowResult, ...] = ()
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)  # stage → seconds for this clip
    error: str | None = None  # the audio could not be used; the sentence says why

    @property
    def features_bit_exact(self) -> bool:
        return all(w.features_bit_exact for w in self.windows)

    @property
    def logits_bit_exact(self) -> bool:
        return all(w.logits_bit_exact for w in self.windows)

    @property
    def bit_exact(self) -> bool:
        return self.error is None and self.features_bit_exact and self.logits_bit_exact

    def dequantized_logits(self) -> np.ndarray:
        """(windows, classes) reference logits as real values."""
        logits = np.stack([w.logits_reference for w in self.windows]).astype(np.float64)
        return self.output_scale * (logits - self.output_zero_point)

    def window_log_probabilities(self) -> np.ndarray:
        """(windows, classes) log-softmax of the dequantized reference logits."""
        return analysis.log_softmax(self.dequantized_logits())

    @property
    def log_probabilities(self) -> np.ndarray:
        """The clip-level decision: the mean of the windows' log-probabilities."""
        return self.window_log_probabilities().mean(axis=0)

    @property
    def predicted(self) -> str:
        return self.labels[int(np.argmax(self.log_probabilities))]

    def top(self, k: int = 3) -> list[tuple[str, float, float]]:
        """(label, dequantized logit averaged over windows, probability) for the k best scenes."""
        scores = self.dequantized_logits().mean(axis=0)
        lp = self.log_probabilities
        probabilities = np.exp(lp - lp.max())
        probabilities /= probabilities.sum()
        order = np.argsort(-lp, kind="stable")[:k]
        return [(self.labels[i], float(scores[i]), float(probabilities[i])) for i in order]

    def to_dict(self) -> dict:
        data: dict = {"file": str(self.source.path), "label": self.source.label, "device": self.source.device}
        if self.error is not None:
            return {**data, "error": self.error, "bit_exact": {"features": False, "logits": False, "all": False}}
        data.update({
            "predicted": self.predicted,
            "correct": None if self.source.label is None else self.predicted == self.source.label,
            "top": [{"label": l, "score": round(s, 6), "probability": round(p, 6)} for l, s, p in self.top()],
            "bit_exact": {"features": self.features_bit_exact, "logits": self.logits_bit_exact, "all": self.bit_exact},
            "int8_logits": {"tflite_ref": [w.logits_reference.tolist() for w in self.windows],
                            "tflm": [w.logits_tflm.tolist() for w in self.windows]},
            "windows": [{
                "start_s": round(w.start_seconds, 6),
                "predicted": self.labels[int(np.argmax(w.logits_reference))],
                "bit_exact": {"features": w.features_bit_exact, "logits": w.logits_bit_exact},
                "feature_divergence": w.feature_divergence.to_dict() if w.feature_divergence else None,
                "operator_divergence": w.operator_divergence.to_dict() if w.operator_divergence else None,
            } for w in self.windows],
            "notes": list(self.notes),
            "timings_s": {k: round(v, 6) for k, v in self.timings.items()},
        })
        return data


def window_starts(n_samples: int, clip_samples: int, hop: int) -> list[int]:
    """Windows of clip_samples every hop, all inside the audio; when the hops leave a tail, one more window
    ends at the audio's end, so every sample is seen and no silence is invented."""
    if n_samples <= clip_samples:
        return [0]
    starts = list(range(0, n_samples - clip_samples + 1, hop))
    if starts[-1] + clip_samples < n_samples:
        starts.append(n_samples - clip_samples)
    return starts


class Simulator:
    """The deployed pipeline on the host, built once: numpy and C front ends, TFLite REF and TFLM interpreters.

    `tflm_flatbuffer` replaces the model the TFLM runtime runs: how the tests prove that a perturbed engine is
    caught and localised. Users leave it alone.
    """

    def __init__(self, deployment: Deployment, options: SimulateOptions = SimulateOptions(), *,
                 tflm_flatbuffer: bytes | None = None):
        self.deployment = deployment
        self.options = options
        m = deployment.manifest
        self.cfg = m.frontend
        self.numpy_frontend = IntegerFrontend(self.cfg)
        self.c_frontend = CFrontend(self.cfg, frontend_sources=deployment.frontend_sources)
        self.reference = analysis.reference_interpreter(deployment.flatbuffer)
        self.tflm_flatbuffer = tflm_flatbuffer if tflm_flatbuffer is not None else deployment.flatbuffer
        self.tflm = analysis.tflm_interpreter(self.tflm_flatbuffer, m.tflm_arena_bytes)
        self._comparer: OperatorComparer | None = None
        hop_seconds = options.hop_seconds if options.hop_seconds is not None else self.cfg.clip_samples / self.cfg.sample_rate
        self.hop = int(round(hop_seconds * self.cfg.sample_rate))
        if self.hop < 1:
            raise InputError(f"hop of {hop_seconds} s is under one sample; pass a positive --hop in seconds.")

    @property
    def comparer(self) -> OperatorComparer:
        if self._comparer is None:
            self._comparer = OperatorComparer(self.deployment.flatbuffer, self.tflm_flatbuffer,
                                              self.deployment.manifest.tflm_arena_bytes)
        return self._comparer

    def windows(self, samples: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
        clip = self.cfg.clip_samples
        if len(samples) <= clip:
            fitted, note = fit_to_clip(samples, clip)
            return fitted[None], [0], [note] if note else []
        starts = window_starts(len(samples), clip, self.hop)
        windows = np.stack([samples[s : s + clip] for s in starts])
        note = (f"{len(samples) / self.cfg.sample_rate:.2f} s of audio: {len(starts)} windows of "
                f"{clip / self.cfg.sample_rate:g} s, hop {self.hop / self.cfg.sample_rate:g} s")
        if starts[-1] - starts[-2] != self.hop:
            note += " (the last window ends at the audio's end)"
        return windows, starts, [note]

    def run_pcm(self, pcm: np.ndarray, starts: Sequence[int] | None = None, timings: dict[str, float] | None = None,
                per_window_timings: list[dict[str, float]] | None = None) -> list[WindowResult]:
        """(windows, clip_samples) int16 → one WindowResult per window; seconds per stage are added to
        `timings`, and the interpreters' and comparison's per window appended to `per_window_timings`."""
        timings = timings if timings is not None else {}
        per_window_timings = per_window_timings if per_window_timings is not None else []
        clock = time.perf_counter
        t = clock()
        numpy_features = self.numpy_frontend(pcm)
        timings["frontend_numpy"] = timings.get("frontend_numpy", 0.0) + clock() - t
        t = clock()
        c_features = self.c_frontend(pcm)
        timings["frontend_c"] = timings.get("frontend_c", 0.0) + clock() - t
        starts = starts if starts is not None else [0] * len(pcm)
        results = []
        for features_numpy, features_c, start in zip(numpy_features, c_features, starts):
            window_timings: dict[str, float] = {}
            t = clock()
            logits_reference = analysis.invoke(self.reference, features_numpy)
            window_timings["tflite_ref"] = clock() - t
            t = clock()
            logits_tflm = analysis.tflm_invoke(self.tflm, features_numpy)
            window_timings["tflm"] = clock() - t
            t = clock()
            features_equal = bool(np.array_equal(features_numpy, features_c))
            feature_divergence = operator_divergence = None
            if self.options.localise and not features_equal:
                feature_divergence = first_feature_difference(features_numpy, features_c)
            if self.options.localise and not np.array_equal(logits_reference, logits_tflm):
                operator_divergence = self.comparer.first_divergence(features_numpy)
            results.append(WindowResult(start / self.cfg.sample_rate, logits_reference, logits_tflm, features_equal,
                                        feature_divergence, operator_divergence))
            window_timings["compare"] = clock() - t
            per_window_timings.append(window_timings)
            for stage, seconds in window_timings.items():
                timings[stage] = timings.get(stage, 0.0) + seconds
        return results

    def simulate(self, source: ClipSource) -> ClipResult:
        """One audio file: read, window, both front ends, both interpreters, compared."""
        return self.simulate_batch([source])[0]

    def simulate_batch(self, sources: Sequence[ClipSource]) -> list[ClipResult]:
        """Several files at once: the front ends run once over all their windows (numpy vectorises over
        clips, and the C harness is one process start), the interpreters window by window."""
        m = self.deployment.manifest
        clock = time.perf_counter
        readable: list[tuple[int, np.ndarray, list[int], tuple[str, ...], float]] = []
        results: list[ClipResult | None] = [None] * len(sources)
        for i, source in enumerate(sources):
            t = clock()
            try:
                audio = read_wav(source.path, self.cfg.sample_rate)
            except InputError as exc:
                results[i] = ClipResult(source, m.labels, m.output.scale, m.output.zero_point, error=str(exc))
                continue
            pcm, starts, window_notes = self.windows(audio.samples)
            readable.append((i, pcm, starts, audio.notes + tuple(window_notes), clock() - t))
        if readable:
            batch_timings: dict[str, float] = {}
            per_window_timings: list[dict[str, float]] = []
            windows = self.run_pcm(np.concatenate([r[1] for r in readable]), [s for r in readable for s in r[2]],
                                   batch_timings, per_window_timings)
            total_windows = sum(len(r[2]) for r in readable)
            position = 0
            for i, pcm, starts, notes, read_seconds in readable:
                mine = slice(position, position + len(starts))
                position += len(starts)
                timings = {stage: 0.0 for stage in STAGES}
                timings["read"] = read_seconds
                for stage in ("frontend_numpy", "frontend_c"):  # batched: each clip's share by its windows
                    timings[stage] = batch_timings.get(stage, 0.0) * len(starts) / total_windows
                for window_timings in per_window_timings[mine]:
                    for stage, seconds in window_timings.items():
                        timings[stage] += seconds
                results[i] = ClipResult(sources[i], m.labels, m.output.scale, m.output.zero_point,
                                        tuple(windows[mine]), notes, timings)
        return [r for r in results if r is not None]


# One Simulator per worker process, built by the pool's initializer.
_worker: Simulator | None = None


def _init_worker(deployment: Deployment, options: SimulateOptions) -> None:
    global _worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker = Simulator(deployment, options)


def _simulate_in_worker(sources: list[ClipSource]) -> list[ClipResult]:
    assert _worker is not None
    return _worker.simulate_batch(sources)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def simulate_many(deployment: Deployment, sources: Sequence[ClipSource], options: SimulateOptions = SimulateOptions(),
                  *, jobs: int | None = None, batch: int = 8,
                  progress: Callable[[ClipResult], None] | None = None) -> list[ClipResult]:
    """Every clip, in input order, `batch` files at a time; over `jobs` processes (default: the cores) when
    there are more clips than one batch."""
    sources = list(sources)
    batches = [sources[i : i + batch] for i in range(0, len(sources), batch)]
    jobs = max(1, min(jobs or default_jobs(), len(batches)))
    results: list[ClipResult] = []

    def collect(outcomes) -> list[ClipResult]:
        for outcome in outcomes:
            for result in outcome:
                results.append(result)
                if progress:
                    progress(result)
        return results

    # Built here first: compiles the C once and surfaces any setup error before workers exist.
    simulator = Simulator(deployment, options)
    if jobs == 1:
        return collect(map(simulator.simulate_batch, batches))
    with ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_init_worker,
                             initargs=(deployment, options)) as pool:
        return collect(pool.map(_simulate_in_worker, batches))
