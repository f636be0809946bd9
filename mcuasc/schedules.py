"""Learning-rate schedules of the seed's recipes, as pure functions of the (fractional) epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence


def cosine_with_restarts(epoch: float, base_lr: float, total_epochs: int, restarts: Sequence[int]) -> float:
    """Cosine to zero, reset to base_lr at each restart epoch (SGDR; seed §3.2 MobileNetV2: 3, 7, 15, 33 of 64)."""
    bounds = [0, *[r for r in restarts if 0 < r < total_epochs], total_epochs]
    for start, end in zip(bounds, bounds[1:]):
        if epoch < end:
            return base_lr * 0.5 * (1 + math.cos(math.pi * (epoch - start) / (end - start)))
    return 0.0


def warmup_cosine(epoch: float, base_lr: float, total_epochs: int, warmup_epochs: float) -> float:
    """Linear warm-up 0 → base_lr, then cosine to zero (seed §3.2 distillation: 0 → 0.006 over 10 epochs)."""
    warmup = min(warmup_epochs, total_epochs / 2)
    if epoch < warmup:
        return base_lr * epoch / warmup
    progress = (epoch - warmup) / max(total_epochs - warmup, 1e-9)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class PlateauDecay:
    """Multiply the rate by factor when the training loss has not fallen for patience epochs (seed: ×0.4, 3)."""

    def __init__(self, base_lr: float, factor: float, patience: int):
        self.lr = base_lr
        self.factor = factor
        self.patience = patience
        self.best = math.inf
        self.stale = 0

    def end_epoch(self, loss: float) -> float:
        if loss < self.best:
            self.best, self.stale = loss, 0
        else:
            self.stale += 1
            if self.stale >= self.patience:
                self.lr *= self.factor
                self.stale = 0
        return self.lr
