"""Training on this machine's CPU: throughput of teacher and student, and what distillation buys.

    .venv/bin/python benchmarks/training.py [--clips-per-class 20] [--teacher-epochs 6] [--student-epochs 30]

Synthesizes the scene set (seed 0), trains the BC-ResNet teacher briefly, then the student twice with the
same seed and schedule (warm-up + cosine): once on labels only, once distilled from the teacher. Reports
validation accuracy and log loss overall and on seen (a, b, c, s1–s3) and unseen (s4–s6) devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, markdown_table
from mcuasc.checkpoint import load_checkpoint
from mcuasc.data.cache import FeatureCache
from mcuasc.data.synth import synthesize_dataset
from mcuasc.data.tau import TauDataset
from mcuasc.models import ARCHITECTURES, build_model
from mcuasc.train import evaluate, recipe_for, train

UNSEEN = {"s4", "s5", "s6"}


def throughput(arch: str, batch: int, steps: int = 3) -> float:
    model = build_model(arch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, *ARCHITECTURES[arch].input_shape), torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch / min(times[1:])


def split_metrics(checkpoint: Path, data: Path) -> dict[str, float]:
    dataset = TauDataset.open(data)
    clips = dataset.split("evaluate")
    ckpt = load_checkpoint(checkpoint)
    features = torch.from_numpy(FeatureCache(data / ".mcuasc-cache").load_or_compute(clips, ckpt.frontend))
    labels = np.array([c.label_index for c in clips])
    devices = [c.device for c in clips]
    m = evaluate(ckpt.build_model(), features, labels, devices, len(dataset.labels))
    unseen = np.array([d in UNSEEN for d in devices])
    predicted = m["log_probs"].argmax(axis=1)
    return {
        "accuracy": m["accuracy"], "log_loss": m["log_loss"],
        "seen": float((predicted == labels)[~unseen].mean()), "unseen": float((predicted == labels)[unseen].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips-per-class", type=int, default=20)
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--student-epochs", type=int, default=30)
    args = parser.parse_args()
    print(f"# Training on the CPU\n\n{machine(f'torch {torch.__version__}', f'{torch.get_num_threads()} threads')}\n")
    rows = [[arch, batch, f"{throughput(arch, batch):.1f}"] for arch, batch in
            (("bcresnet-student", 32), ("bcresnet-teacher", 8), ("mobilenetv2-ca", 32))]
    print(markdown_table(["model", "batch", "training clips / s"], rows))

    with tempfile.TemporaryDirectory() as tmp:
        data, work = Path(tmp) / "scenes", Path(tmp)
        synthesize_dataset(data, args.clips_per_class, seed=0)
        dataset = TauDataset.open(data)
        start = time.perf_counter()
        teacher = dataclasses.replace(recipe_for("bcresnet-teacher"), epochs=args.teacher_epochs, batch_size=16)
        train(data, teacher, work / "teacher.pt")
        teacher_seconds = time.perf_counter() - start
        schedule = dict(epochs=args.student_epochs, warmup_epochs=max(1, args.student_epochs // 10))
        plain = dataclasses.replace(recipe_for("bcresnet-student", distill=True), kd_weight=0.0, **schedule)
        train(data, plain, work / "plain.pt")
        distilled = dataclasses.replace(recipe_for("bcresnet-student", distill=True), **schedule)
        train(data, distilled, work / "kd.pt", teacher=work / "teacher.pt")
        results = [("teacher (c = 80)", split_metrics(work / "teacher.pt", data), f"{args.teacher_epochs} epochs, {teacher_seconds:.0f} s"),
                   ("student, labels only", split_metrics(work / "plain.pt", data), f"{args.student_epochs} epochs"),
                   ("student, distilled", split_metrics(work / "kd.pt", data), f"{args.student_epochs} epochs, T = 2, weight 0.5")]
        train_n, eval_n = len(dataset.split("train")), len(dataset.split("evaluate"))
    print(f"\n## Synthetic scenes: {args.clips_per_class} clips per class, {train_n} train / {eval_n} evaluate, chance 10 %\n")
    print(markdown_table(
        ["model", "accuracy", "seen devices", "unseen devices (s4–s6)", "log loss", "training"],
        [[name, f"{m['accuracy']:.3f}", f"{m['seen']:.3f}", f"{m['unseen']:.3f}", f"{m['log_loss']:.3f}", note]
         for name, m, note in results]))


if __name__ == "__main__":
    main()
