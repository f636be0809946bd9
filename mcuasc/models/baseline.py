"""The DCASE2022 task-1 baseline CNN (spec: dcase2022-baseline-and-limits.md), for (B, 1, 40, 51) input.

Keras convention: 46,246 parameters with batch-norm counted with its four vectors.
"""

from __future__ import annotations

import torch
from torch import nn


class DcaseBaseline(nn.Module):
    def __init__(self, n_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 7, padding=3), nn.BatchNorm2d(16), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(16, 16, 7, padding=3), nn.BatchNorm2d(16), nn.ReLU())
        self.pool1 = nn.Sequential(nn.MaxPool2d(5), nn.Dropout(dropout))
        self.conv3 = nn.Sequential(nn.Conv2d(16, 32, 7, padding=3), nn.BatchNorm2d(32), nn.ReLU())
        # Keras MaxPooling2D((4, 100), padding="same") on 8 × 10: one window of 4 × 10 per output.
        self.pool2 = nn.Sequential(nn.MaxPool2d((4, 10)), nn.Dropout(dropout))
        self.dense1 = nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Dropout(dropout))
        self.dense2 = nn.Linear(100, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv3(self.pool1(self.conv2(self.conv1(x)))))
        return self.dense2(self.dense1(x))

    def table_rows(self) -> list[tuple[str, nn.Module]]:
        return [("conv 1 (+BN+ReLU)", self.conv1), ("conv 2", self.conv2), ("max-pool 1", self.pool1),
                ("conv 3", self.conv3), ("max-pool 2", self.pool2), ("dense 1", self.dense1), ("dense 2", self.dense2)]


def dcase_baseline(n_classes: int = 10, **kwargs) -> DcaseBaseline:
    return DcaseBaseline(n_classes=n_classes, **kwargs)
