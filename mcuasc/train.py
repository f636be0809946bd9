"""Stage 1: training and knowledge distillation in torch, with the seed's recipes as defaults.

Features come from the float64 reference front end (the integer one matches it to ~0.001 dB), computed once
per front-end config and dataset split and cached; waveform augmentations, when a recipe uses them, are
applied to the PCM and the features of that batch recomputed (the float front end runs ~1 ms a clip).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mcuasc.augment import AugmentConfig, apply_feature_augmentations, apply_waveform_augmentations, mixup
from mcuasc.augment import RECIPES as AUGMENT_RECIPES
from mcuasc.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mcuasc.data.cache import FeatureCache, load_pcm
from mcuasc.data.tau import TauDataset
from mcuasc.errors import InputError
from mcuasc.frontend import FloatFrontend, preset
from mcuasc.models import ARCHITECTURES, build_model
from mcuasc.models.fake_quant import Int8Simulation
from mcuasc.schedules import PlateauDecay, cosine_with_restarts, warmup_cosine


@dataclass(frozen=True)
class TrainConfig:
    """Every training decision; serialised into the checkpoint. Defaults come from recipe_for(arch)."""

    arch: str
    epochs: int
    batch_size: int
    optimizer: str  # "sgd" or "adam"
    lr: float
    momentum: float
    weight_decay: float
    schedule: str  # "plateau", "cosine-restarts", "warmup-cosine" or "constant"
    plateau_factor: float = 0.4
    plateau_patience: int = 3
    restart_epochs: tuple[int, ...] = ()
    warmup_epochs: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    kd_temperature: float = 2.0
    kd_weight: float = 0.5  # share of the loss given to the teacher's soft targets
    # Fine-tune with the converter's int8 rounding simulated (mcuasc.models.fake_quant), batch-norms frozen.
    quantization_aware: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.arch not in ARCHITECTURES:
            problems.append(f"unknown architecture {self.arch!r} (choose one of {', '.join(ARCHITECTURES)})")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("epochs and batch size must be ≥ 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"learning rate must be a positive number, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.schedule not in ("plateau", "cosine-restarts", "warmup-cosine", "constant"):
            problems.append(f"unknown schedule {self.schedule!r}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            problems.append("momentum must be in [0, 1) and weight decay ≥ 0")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 1:
            problems.append("plateau factor must be in (0, 1) and patience ≥ 1")
        if self.warmup_epochs < 0 or any(e < 1 for e in self.restart_epochs):
            problems.append("warm-up epochs must be ≥ 0 and restart epochs ≥ 1")
        if not 0 <= self.kd_weight <= 1 or self.kd_temperature <= 0:
            problems.append("kd_weight must be in [0, 1] and kd_temperature > 0")
        if problems:
            raise InputError("invalid training config: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["restart_epochs"] = list(self.restart_epochs)
        return d


def recipe_for(arch: str, *, distill: bool = False) -> TrainConfig:
    """The seed's recipes (§3.2), the DCASE baseline's (spec) and the nRF52840 board recipe's: what `train`/`distill`
    use unless overridden."""
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
    if distill or arch == "bcresnet-nrf52840":
        # The board recipe (mcuasc's, not the seed's) takes the seed's distillation schedule for plain training
        # too: with the seed's plateau rule (×0.4 when the mixed-up training loss has not fallen in 3 epochs) two
        # seeds ended 11 points apart here (90 %, its rate ≈ 1e-6 by its best epoch, 52; 78 %, no better epoch after
        # the 13th); warm-up and cosine gave 88.7 % for both and fewer int8 flips (README, Convert).
        return TrainConfig(arch, epochs=120, batch_size=32, optimizer="sgd", lr=0.006, momentum=0.9, weight_decay=1e-3,
                           schedule="warmup-cosine", warmup_epochs=10, augment=AUGMENT_RECIPES["bcresnet"])
    if arch.startswith("bcresnet"):
        return TrainConfig(arch, epochs=120, batch_size=32, optimizer="sgd", lr=0.008, momentum=0.9, weight_decay=1e-3,
                           schedule="plateau", augment=AUGMENT_RECIPES["bcresnet"])
    if arch == "mobilenetv2-ca":
        return TrainConfig(arch, epochs=64, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-6,
                           schedule="cosine-restarts", restart_epochs=(3, 7, 15, 33), augment=AUGMENT_RECIPES["mobilenetv2"])
    return TrainConfig(arch, epochs=200, batch_size=16, optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0,
                       schedule="constant", augment=AugmentConfig())


def quantization_aware_recipe(arch: str, epochs: int = 10) -> TrainConfig:
    """Fine-tuning a trained checkpoint with int8 simulated: a tenth of the recipe's rate, constant, no warm-up."""
    base = recipe_for(arch)
    return dataclasses.replace(base, epochs=epochs, lr=base.lr / 10, schedule="constant", warmup_epochs=0,
                               quantization_aware=True)


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    kd_loss: float | None
    val_accuracy: float
    val_macro_accuracy: float
    val_log_loss: float
    per_device_accuracy: dict[str, float]
    seconds: float
    # Quantization-aware fine-tuning: the validation figures with int8 simulated, and top-1 agreement with float.
    val_int8_accuracy: float | None = None
    val_int8_log_loss: float | None = None
    val_int8_agreement: float | None = None


@dataclass
class TrainResult:
    checkpoint_path: Path
    history: list[EpochRecord]
    best_epoch: int
    clips_per_second: float

    @property
    def best(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]


def evaluate(model: torch.nn.Module, features: torch.Tensor, labels: np.ndarray, devices: list[str],
             n_classes: int, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, macro accuracy (mean per-class recall), log loss and per-device accuracy."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(features[i : i + batch_size]) for i in range(0, len(features), batch_size)])
    log_probs = F.log_softmax(logits.double(), dim=1).numpy()
    predicted = log_probs.argmax(axis=1)
    correct = predicted == labels
    per_class = [correct[labels == c].mean() for c in range(n_classes) if np.any(labels == c)]
    device_array = np.array(devices)
    return {
        "accuracy": float(correct.mean()),
        "macro_accuracy": float(np.mean(per_class)),
        "log_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "per_device_accuracy": {d: float(correct[device_array == d].mean()) for d in sorted(set(devices))},
        "log_probs": log_probs,
    }


def _learning_rate(config: TrainConfig, epoch: float, plateau: PlateauDecay | None) -> float:
    if config.schedule == "cosine-restarts":
        return cosine_with_restarts(epoch, config.lr, config.epochs, config.restart_epochs)
    if config.schedule == "warmup-cosine":
        return warmup_cosine(epoch, config.lr, config.epochs, config.warmup_epochs)
    if config.schedule == "plateau" and plateau is not None:
        return plateau.lr
    return config.lr


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against (possibly mixed-up) target distributions."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _train_with_frozen_batch_norms(model: torch.nn.Module) -> None:
    """Training mode, but batch-norms keep their statistics: the ones the converter folds are the ones trained with."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def train(
    data_dir: str | Path,
    config: TrainConfig,
    out: str | Path,
    *,
    teacher: str | Path | None = None,
    init_from: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train config.arch on the TAU-layout set in data_dir (fold1 train / evaluate); keep the best epoch
    (lowest validation log loss) in `out`. With a teacher checkpoint, distil: the loss mixes the hard-label
    cross-entropy with the teacher's temperature-softened targets (Hinton et al.), weight kd_weight.
    With init_from, training starts from that checkpoint's weights (same architecture and labels); with
    config.quantization_aware, each epoch calibrates int8 ranges on the clean training clips; each step trains the
    float model and its int8-simulated twin on the labels, the twin also following the float output (or the
    teacher's), batch-norms frozen; the epoch kept is the one with the lowest simulated-int8 log loss."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    dataset = TauDataset.open(data_dir)
    train_clips, val_clips = dataset.split("train"), dataset.split("evaluate")
    if not train_clips or not val_clips:
        raise InputError(f"{data_dir} has an empty train or evaluate split; both are needed to train.")
    spec = ARCHITECTURES[config.arch]
    fe_cfg = preset(spec.frontend_preset)
    start = load_checkpoint(init_from) if init_from is not None else None
    if start is not None:
        if start.arch != config.arch:
            raise InputError(f"{init_from} holds a {start.arch} model, not {config.arch}; pass --arch {start.arch}.")
        if start.labels != dataset.labels:
            raise InputError(f"{init_from} was trained on other labels; fine-tune on its own label set.")
        fe_cfg = start.frontend
    if config.quantization_aware and start is None:
        raise InputError("quantization-aware fine-tuning starts from a trained checkpoint; pass one (mcuasc train writes it).")
    cache = FeatureCache(Path(cache_dir) if cache_dir else Path(data_dir) / ".mcuasc-cache")

    teacher_ckpt = None
    if teacher is not None:
        teacher_ckpt = load_checkpoint(teacher)
        if teacher_ckpt.labels != dataset.labels:
            raise InputError(f"teacher {teacher} was trained on other labels; distil on the teacher's label set.")

    waveform_augmented = config.augment.uses_waveform
    report = progress or (lambda *_: None)
    report("features", 0, 2)
    val_features = torch.from_numpy(cache.load_or_compute(val_clips, fe_cfg, impl="float"))
    if waveform_augmented:
        train_pcm = load_pcm(train_clips, fe_cfg)
        frontend = FloatFrontend(fe_cfg)
        train_features = None
    else:
        train_features = torch.from_numpy(cache.load_or_compute(train_clips, fe_cfg, impl="float"))
    report("features", 2, 2)
    train_labels = torch.tensor([c.label_index for c in train_clips])
    teacher_logits = None
    if teacher_ckpt is not None:
        # Offline distillation: the teacher labels each clean training clip once, and the student learns from
        # those soft targets (mixed along with the inputs under mix-up). A teacher pass per step would cost
        # ~50× the student's own step for the c = 80 teacher on a CPU. The teacher hears the same clips through its
        # own front end, so a board student (16 kHz, 64 mels) learns from the 44.1 kHz, 256-mel teacher.
        report("teacher targets", 0, 1)
        if teacher_ckpt.frontend == fe_cfg and train_features is not None:
            clean = train_features
        else:
            clean = torch.from_numpy(cache.load_or_compute(train_clips, teacher_ckpt.frontend, impl="float"))
        teacher_model = teacher_ckpt.build_model().to(device)
        with torch.no_grad():
            teacher_logits = torch.cat([teacher_model(clean[i : i + 64].to(device)).cpu() for i in range(0, len(clean), 64)])
        del teacher_model
        report("teacher targets", 1, 1)
    val_labels = np.array([c.label_index for c in val_clips])
    val_devices = [c.device for c in val_clips]
    n_classes = len(dataset.labels)

    model = (start.build_model() if start is not None else build_model(config.arch)).to(device)
    simulation = Int8Simulation(model) if config.quantization_aware else None
    follows_soft_targets = teacher_logits is not None or simulation is not None  # a teacher's, or its own float output
    clean_train = train_features
    if simulation is not None and clean_train is None:
        clean_train = torch.from_numpy(cache.load_or_compute(train_clips, fe_cfg, impl="float"))
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    plateau = PlateauDecay(config.lr, config.plateau_factor, config.plateau_patience) if config.schedule == "plateau" else None

    out = Path(out)
    history: list[EpochRecord] = []
    best_loss, best_epoch = math.inf, 0
    n = len(train_clips)
    steps = math.ceil(n / config.batch_size)
    seen, busy = 0, 0.0
    for epoch in range(config.epochs):
        started = time.perf_counter()
        model.train()
        if simulation is not None:
            # The converter's calibration, as min/max of every int8 tensor over the clean training clips.
            simulation.calibrate(clean_train[i : i + 64].to(device) for i in range(0, len(clean_train), 64))
            _train_with_frozen_batch_norms(model)
        order = rng.permutation(n)
        total, total_kd = 0.0, 0.0
        for step in range(steps):
            lr = _learning_rate(config, epoch + step / steps, plateau)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            if waveform_augmented:
                pcm = apply_waveform_augmentations(train_pcm[index], config.augment, rng)
                x = torch.from_numpy(np.ascontiguousarray(frontend(pcm).transpose(0, 3, 1, 2)))
            else:
                x = train_features[index]
            x = apply_feature_augmentations(x, config.augment, generator)
            targets = F.one_hot(train_labels[index], n_classes).float()
            if teacher_logits is not None:  # soft targets travel with the hard ones through mix-up
                targets = torch.cat([targets, F.softmax(teacher_logits[index] / config.kd_temperature, dim=1)], dim=1)
            if config.augment.mixup_alpha > 0:
                x, targets = mixup(x, targets, config.augment.mixup_alpha, generator)
            targets, soft = targets[:, :n_classes].to(device), targets[:, n_classes:].to(device)
            x = x.to(device)
            float_loss = None
            if simulation is not None:
                # Both the float model and its int8 twin learn the labels, and the int8 one follows the float
                # one's softened output (or a teacher's): the two must decide alike, which is what convert's
                # agreement figure measures.
                float_logits = model(x)
                float_loss = _soft_cross_entropy(float_logits, targets)
                if teacher_logits is None:
                    soft = F.softmax(float_logits.detach() / config.kd_temperature, dim=1)
                with simulation.active():
                    logits = model(x)
            else:
                logits = model(x)
            loss = _soft_cross_entropy(logits, targets)
            if float_loss is not None:
                loss = (loss + float_loss) / 2
            if follows_soft_targets:
                kd = F.kl_div(F.log_softmax(logits / config.kd_temperature, dim=1), soft, reduction="batchmean")
                kd = kd * config.kd_temperature**2
                total_kd += kd.item() * len(index)
                loss = (1 - config.kd_weight) * loss + config.kd_weight * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            report(f"epoch {epoch + 1}/{config.epochs}", step + 1, steps)
        busy += time.perf_counter() - started
        seen += n
        train_loss = total / n
        if plateau is not None:
            plateau.end_epoch(train_loss)
        metrics = evaluate(model, val_features.to(device), val_labels, val_devices, n_classes)
        int8: dict[str, Any] = {}
        if simulation is not None:
            with simulation.active():
                simulated = evaluate(model, val_features.to(device), val_labels, val_devices, n_classes)
            agreement = float((simulated["log_probs"].argmax(1) == metrics["log_probs"].argmax(1)).mean())
            int8 = {"val_int8_accuracy": simulated["accuracy"], "val_int8_log_loss": simulated["log_loss"],
                    "val_int8_agreement": agreement}
        record = EpochRecord(
            epoch + 1, lr, train_loss, total_kd / n if follows_soft_targets else None, metrics["accuracy"],
            metrics["macro_accuracy"], metrics["log_loss"], metrics["per_device_accuracy"], time.perf_counter() - started,
            **int8,
        )
        history.append(record)
        if log:
            log(record)
        kept_loss = record.val_int8_log_loss if record.val_int8_log_loss is not None else metrics["log_loss"]
        if kept_loss < best_loss:
            best_loss, best_epoch = kept_loss, epoch + 1
            save_checkpoint(
                Checkpoint(
                    arch=config.arch,
                    state_dict={k: v.cpu() for k, v in model.state_dict().items()},
                    frontend=fe_cfg,
                    labels=list(dataset.labels),
                    hparams=dict(start.hparams) if start is not None else {},
                    train_config={**config.to_dict(), "teacher": str(teacher) if teacher else None, "data": str(data_dir),
                                  "init_from": str(init_from) if init_from else None,
                                  "init_train_config": start.train_config if start is not None else None},
                    metrics={**dataclasses.asdict(record), "history": [dataclasses.asdict(r) for r in history]},
                ),
                out,
            )
    return TrainResult(out, history, best_epoch, seen / busy if busy else 0.0)
