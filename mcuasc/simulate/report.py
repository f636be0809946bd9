"""Many clips' results summed up (overall and per device) and exported as CSV, one row per window."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcuasc.simulate.simulator import STAGES, ClipResult


@dataclass(frozen=True)
class SummaryRow:
    group: str  # "all" or "device X"
    clips: int
    windows: int
    bit_exact: int  # clips whose every window is bit-exact at every stage
    unreadable: int
    labelled: int
    accuracy: float | None  # over the labelled clips
    log_loss: float | None


def _row(group: str, results: Sequence[ClipResult]) -> SummaryRow:
    ok = [r for r in results if r.error is None]
    labelled = [r for r in ok if r.source.label in r.labels]
    accuracy = log_loss = None
    if labelled:
        accuracy = float(np.mean([r.predicted == r.source.label for r in labelled]))
        log_loss = float(-np.mean([r.log_probabilities[r.labels.index(r.source.label)] for r in labelled]))
    return SummaryRow(group, len(results), sum(len(r.windows) for r in ok), sum(r.bit_exact for r in ok),
                      len(results) - len(ok), len(labelled), accuracy, log_loss)


def summarize(results: Sequence[ClipResult]) -> list[SummaryRow]:
    """The overall row, then one per device when the clips name devices."""
    rows = [_row("all", results)]
    devices = sorted({r.source.device for r in results if r.source.device}, key=lambda d: (len(d), d))
    rows += [_row(f"device {d}", [r for r in results if r.source.device == d]) for d in devices]
    return rows


def stage_seconds(results: Sequence[ClipResult]) -> dict[str, float]:
    return {stage: sum(r.timings.get(stage, 0.0) for r in results) for stage in STAGES}


def mismatch_lines(results: Sequence[ClipResult]) -> list[str]:
    """One sentence per divergence found: the file, the window (of long audio) and where the two sides part."""
    lines = []
    for r in results:
        for i, w in enumerate(r.windows):
            for divergence in (w.feature_divergence, w.operator_divergence):
                if divergence is not None:
                    where = f" window {i} ({w.start_seconds:g} s)" if len(r.windows) > 1 else ""
                    lines.append(f"{r.source.path.name}{where}: {divergence.describe()}")
    return lines


CSV_COLUMNS = ("file", "window", "start_s", "label", "device", "predicted_window", "predicted_clip",
               "features_bit_exact", "logits_bit_exact", "logits_tflite_ref", "logits_tflm", "first_divergence", "error")


def csv_text(results: Sequence[ClipResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        base = [str(r.source.path)]
        if r.error is not None:
            writer.writerow([*base, "", "", r.source.label or "", r.source.device or "", "", "", "", "", "", "", "", r.error])
            continue
        for i, w in enumerate(r.windows):
            divergence = w.feature_divergence or w.operator_divergence
            writer.writerow([*base, i, f"{w.start_seconds:.6f}", r.source.label or "", r.source.device or "",
                             r.labels[int(np.argmax(w.logits_reference))], r.predicted, int(w.features_bit_exact),
                             int(w.logits_bit_exact), " ".join(map(str, w.logits_reference.tolist())),
                             " ".join(map(str, w.logits_tflm.tolist())), divergence.describe() if divergence else "", ""])
    return buffer.getvalue()
