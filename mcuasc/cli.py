"""The `mcuasc` command line: each command is a thin call into the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mcuasc import __version__
from mcuasc.errors import InputError, ToolError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Acoustic scene classification from a torch checkpoint to a Cortex-M, bit-exact on the host.",
)
out = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"mcuasc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


@app.command()
def features(
    audio: Path = typer.Argument(..., help="WAV file: 8/16/24/32-bit PCM or float, any rate and channel count."),
    preset: Optional[str] = typer.Option(None, help="Front-end preset: bcresnet (default), mobilenetv2, dcase-baseline."),
    config: Optional[Path] = typer.Option(None, help="Front-end config JSON (FrontendConfig.to_json()) instead of a preset."),
    impl: str = typer.Option("integer", help="integer (numpy), c (the rendered C, compiled for this host) or float."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Where to save the .npy [default: AUDIO_STEM.PRESET.IMPL.npy]."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Compute one clip's features and save them as .npy (int8 for integer/c, float32 for float)."""
    from mcuasc.features import extract_features, resolve_config, save_npy, summarize

    cfg = resolve_config(preset, config)
    with err.status(f"computing {cfg.name} features ({impl})…"):
        result = extract_features(audio, cfg, impl)
    target = out_path or Path(f"{audio.stem}.{cfg.name}.{impl}.npy")
    save_npy(result.features, target, force=force)
    rows = summarize(result.features, cfg)
    if as_json:
        out.print_json(json.dumps({
            "file": str(audio), "config": cfg.name, "impl": impl, "shape": list(result.features.shape),
            "dtype": str(result.features.dtype), "out": str(target), "notes": list(result.notes), "channels": rows,
        }))
        return
    for note in result.notes:
        err.print(f"note: {note}")
    table = Table(title=f"{audio.name}: {cfg.name} features, {impl} implementation")
    for column in rows[0]:
        table.add_column(column, justify="right" if column != "channel" else "left")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    out.print(table)
    out.print(f"shape {tuple(result.features.shape)} (mels × frames × channels), {result.features.dtype}, saved to {target}")


@app.command()
def presets(as_json: bool = typer.Option(False, "--json", help="Print the configs as JSON.")) -> None:
    """List the front-end presets and their feature shapes."""
    from mcuasc.frontend import PRESETS

    if as_json:
        out.print_json(json.dumps({name: cfg.to_dict() for name, cfg in PRESETS.items()}))
        return
    table = Table(title="front-end presets")
    for column in ("preset", "rate", "window/hop", "mels", "spectrum", "Δ/ΔΔ", "shape"):
        table.add_column(column)
    for name, cfg in PRESETS.items():
        table.add_row(
            name, f"{cfg.sample_rate}", f"{cfg.win_length}/{cfg.hop_length} in {cfg.n_fft}", f"{cfg.n_mels} {cfg.mel_scale}",
            "power" if cfg.power == 2 else "magnitude", "yes" if cfg.deltas else "no", "×".join(map(str, cfg.shape)),
        )
    out.print(table)


@app.command()
def boards() -> None:
    """List the boards mcuasc can generate firmware for (the files in boards/)."""
    from mcuasc.boards import board_names, load_board

    table = Table(title="boards")
    for column in ("board", "cpu", "clock", "flash", "RAM", "microphone rates", "build"):
        table.add_column(column)
    for name in board_names():
        b = load_board(name)
        rates = "any" if b.microphone.sample_rates is None else ", ".join(map(str, b.microphone.sample_rates))
        table.add_row(name, b.cpu, f"{b.clock_hz / 1e6:g} MHz", f"{b.flash_bytes // 1024} KB", f"{b.ram_bytes // 1024} KB",
                      f"{b.microphone.type}: {rates}", b.build_system)
    out.print(table)


@app.command("synth-data")
def synth_data(
    folder: Path = typer.Argument(..., help="Folder to write the set into (new, empty, or an earlier synth-data output)."),
    clips_per_class: int = typer.Option(20, help="Clips per scene; 30 % of them form the evaluation split."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
) -> None:
    """Write a deterministic synthetic ten-scene set in the TAU Urban Acoustic Scenes 2022 Mobile layout."""
    from mcuasc.data.synth import synthesize_dataset
    from mcuasc.data.tau import TauDataset

    with _progress() as progress:
        task = progress.add_task("synthesizing", total=None)
        summary = synthesize_dataset(folder, clips_per_class, seed,
                                     progress=lambda done, total: progress.update(task, completed=done, total=total))
    dataset = TauDataset.open(folder)
    table = Table(title=f"{summary['clips']} clips in {folder}")
    for column in ("split", "clips", "per device"):
        table.add_column(column)
    for split in ("train", "evaluate"):
        breakdown = dataset.device_breakdown(split)
        table.add_row(split, str(sum(breakdown.values())), ", ".join(f"{d}: {n}" for d, n in breakdown.items()))
    out.print(table)


@app.command()
def zoo(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    summary_only: bool = typer.Option(False, "--summary", help="Only the summary table, not the per-layer tables."),
) -> None:
    """List every model: per-layer and total parameters and MACs beside the seed's or the challenge's figures,
    and the DCASE2022 verdict (≤ 128 K parameters, ≤ 30 MMAC)."""
    from mcuasc.models.zoo import render_zoo, zoo_report

    report = zoo_report()
    if as_json:
        out.print_json(json.dumps(report))
    else:
        render_zoo(report, out, details=not summary_only)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _run_training(data: Path, config, out_path: Path, teacher: Optional[Path], force: bool,
                  init_from: Optional[Path] = None) -> None:
    from mcuasc.train import train

    if out_path.exists() and not force:
        raise InputError(f"{out_path} already exists; pass --force to overwrite it or choose another --out.")
    what = "fine-tuning with int8 simulated" if config.quantization_aware else "distilling" if teacher else "training"
    table = Table(title=f"{what} {config.arch} on {data}")
    for column in ("epoch", "lr", "train loss", "KD loss", "val acc", "val macro acc", "val log loss", "s"):
        table.add_column(column, justify="right")
    with _progress() as progress:
        task = progress.add_task("starting", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total)

        def on_epoch(r) -> None:
            kd = "" if r.kd_loss is None else f"{r.kd_loss:.3f}"
            int8 = "" if r.val_int8_accuracy is None else (
                f"  int8 (simulated): acc {r.val_int8_accuracy:.3f}  log loss {r.val_int8_log_loss:.3f}  "
                f"agreement with float {r.val_int8_agreement:.3f}")
            progress.console.print(
                f"epoch {r.epoch:3d}  lr {r.lr:.5f}  loss {r.train_loss:.3f}  {('KD ' + kd) if kd else ''}  "
                f"val acc {r.val_accuracy:.3f}  macro {r.val_macro_accuracy:.3f}  log loss {r.val_log_loss:.3f}{int8}  {r.seconds:.1f} s"
            )
            table.add_row(str(r.epoch), f"{r.lr:.5f}", f"{r.train_loss:.3f}", kd, f"{r.val_accuracy:.3f}",
                          f"{r.val_macro_accuracy:.3f}", f"{r.val_log_loss:.3f}", f"{r.seconds:.1f}")

        result = train(data, config, out_path, teacher=teacher, init_from=init_from, progress=on_progress, log=on_epoch)
    best = result.best
    out.print(f"best epoch {result.best_epoch}: accuracy {best.val_accuracy:.3f} (macro {best.val_macro_accuracy:.3f}), "
              f"log loss {best.val_log_loss:.3f}; per device: "
              + ", ".join(f"{d} {a:.2f}" for d, a in best.per_device_accuracy.items()))
    if best.val_int8_accuracy is not None:
        out.print(f"int8 simulated: accuracy {best.val_int8_accuracy:.3f}, log loss {best.val_int8_log_loss:.3f}, "
                  f"top-1 agreement with float {best.val_int8_agreement:.3f}; next: mcuasc convert {out_path}")
    out.print(f"checkpoint: {out_path} ({result.clips_per_second:.0f} training clips/s)")


def _training_config(arch: str, distill: bool, **overrides):
    import dataclasses

    from mcuasc.augment import RECIPES
    from mcuasc.train import recipe_for

    config = recipe_for(arch, distill=distill)
    changes = {k: v for k, v in overrides.items() if v is not None and k != "augment"}
    if overrides.get("augment") is not None:
        if overrides["augment"] not in RECIPES:
            raise InputError(f"unknown augmentation recipe {overrides['augment']!r}; choose one of {', '.join(RECIPES)}.")
        changes["augment"] = RECIPES[overrides["augment"]]
    return dataclasses.replace(config, **changes)


@app.command(name="train")
def train_command(
    data: Path = typer.Option(..., help="Dataset folder in the TAU 2022 layout (mcuasc synth-data makes one)."),
    arch: str = typer.Option(..., help="bcresnet-teacher, bcresnet-student, mobilenetv2-ca or dcase-baseline."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Checkpoint to write [default: ARCH.pt]."),
    epochs: Optional[int] = typer.Option(None, help="Override the recipe's epochs."),
    lr: Optional[float] = typer.Option(None, help="Override the recipe's learning rate."),
    batch_size: Optional[int] = typer.Option(None, help="Override the recipe's batch size."),
    weight_decay: Optional[float] = typer.Option(None, help="Override the recipe's weight decay."),
    momentum: Optional[float] = typer.Option(None, help="Override the SGD momentum (0.9)."),
    optimizer: Optional[str] = typer.Option(None, help="Override the optimizer: sgd or adam."),
    schedule: Optional[str] = typer.Option(None, help="Override the schedule: plateau, cosine-restarts, warmup-cosine, constant."),
    plateau_factor: Optional[float] = typer.Option(None, help="Plateau schedule: multiply the rate by this (0.4)."),
    plateau_patience: Optional[int] = typer.Option(None, help="Plateau schedule: epochs without improvement (3)."),
    restart_epochs: Optional[str] = typer.Option(None, help="Cosine schedule: restart epochs, comma-separated (3,7,15,33)."),
    warmup_epochs: Optional[int] = typer.Option(None, help="Warm-up epochs for the warmup-cosine schedule."),
    augment: Optional[str] = typer.Option(None, help="Augmentation recipe: none, bcresnet, bcresnet-fw, mobilenetv2."),
    seed: Optional[int] = typer.Option(None, help="Random seed [default: 0]."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
) -> None:
    """Train a model with its recipe (the seed's BC-ResNet: SGD 0.008, ×0.4 on plateau, 120 epochs; the nRF52840
    recipe: SGD, 10 warm-up epochs to 0.006, cosine to zero, 120 epochs; MobileNetV2: SGD 0.1, cosine with
    restarts, 64 epochs), keeping the epoch with the lowest validation log loss."""
    restarts = None
    if restart_epochs is not None:
        try:
            restarts = tuple(int(e) for e in restart_epochs.split(",") if e.strip())
        except ValueError:
            raise InputError(f"--restart-epochs takes whole numbers separated by commas, e.g. 3,7,15,33; got {restart_epochs!r}.") from None
    config = _training_config(arch, False, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                              momentum=momentum, optimizer=optimizer, schedule=schedule, plateau_factor=plateau_factor,
                              plateau_patience=plateau_patience, restart_epochs=restarts, warmup_epochs=warmup_epochs,
                              augment=augment, seed=seed)
    _run_training(data, config, out_path or Path(f"{arch}.pt"), None, force)


@app.command()
def distill(
    teacher: Path = typer.Option(..., help="Teacher checkpoint (mcuasc train --arch bcresnet-teacher)."),
    data: Path = typer.Option(..., help="Dataset folder in the TAU 2022 layout."),
    arch: str = typer.Option("bcresnet-student", help="Student architecture."),
    out_path: Path = typer.Option(Path("student.pt"), "--out", help="Student checkpoint to write."),
    temperature: Optional[float] = typer.Option(None, help="KD temperature [default: 2]."),
    kd_weight: Optional[float] = typer.Option(None, help="Weight of the KD term against the labels [default: 0.5]."),
    epochs: Optional[int] = typer.Option(None, help="Override the recipe's epochs (120)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate after warm-up [default: 0.006]."),
    warmup_epochs: Optional[int] = typer.Option(None, help="Linear warm-up epochs [default: 10]."),
    augment: Optional[str] = typer.Option(None, help="Augmentation recipe [default: bcresnet]."),
    seed: Optional[int] = typer.Option(None, help="Random seed [default: 0]."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
) -> None:
    """Distil a student from a teacher: hard-label loss plus the teacher's softened targets; lr warms up
    0 → 0.006 over 10 epochs, then cosine to zero (seed §3.2)."""
    config = _training_config(arch, True, kd_temperature=temperature, kd_weight=kd_weight, epochs=epochs, lr=lr,
                              warmup_epochs=warmup_epochs, augment=augment, seed=seed)
    _run_training(data, config, out_path, teacher, force)


@app.command(name="finetune-int8")
def finetune_int8(
    checkpoint: Path = typer.Argument(..., help="Trained checkpoint (mcuasc train or distill)."),
    data: Path = typer.Option(..., help="Dataset folder in the TAU 2022 layout (the one it was trained on)."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Checkpoint to write [default: NAME_int8aware.pt]."),
    epochs: int = typer.Option(10, help="Fine-tuning epochs."),
    lr: Optional[float] = typer.Option(None, help="Learning rate [default: a tenth of the recipe's]."),
    teacher: Optional[Path] = typer.Option(None, help="Keep distilling from this teacher while fine-tuning."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
) -> None:
    """Fine-tune a trained checkpoint with the converter's int8 rounding simulated (quantization-aware), so that
    its int8 model decides as its float model does; then `mcuasc convert` the result as usual.

    Each epoch calibrates every int8 tensor's range on the clean training clips (as convert does); each step
    trains the float model and its int8 twin (straight-through gradients, batch-norms frozen) on the labels, the
    int8 output also following the float one. The epoch with the lowest simulated-int8 validation log loss is kept."""
    import dataclasses

    from mcuasc.checkpoint import load_checkpoint
    from mcuasc.train import quantization_aware_recipe

    arch = load_checkpoint(checkpoint).arch
    config = quantization_aware_recipe(arch, epochs)
    if lr is not None:
        config = dataclasses.replace(config, lr=lr)
    _run_training(data, config, out_path or checkpoint.with_name(f"{checkpoint.stem}_int8aware.pt"), teacher, force,
                  init_from=checkpoint)


def _percentile_option(percentile: float | None, activations: str = "int8") -> dict[str, float | None]:
    """--activation-percentile as ConvertOptions takes it: absent keeps the default, 100 means min/max (None); int16
    activations take none."""
    from mcuasc.convert.pipeline import INT16_PERCENTILE_REFUSED

    if percentile is None:
        return {}
    if activations == "int16":
        raise InputError(INT16_PERCENTILE_REFUSED)
    return {"activation_percentile": None if percentile == 100 else percentile}


@app.command(name="convert")
def convert_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by mcuasc train or distill (e.g. student.pt)."),
    data: Optional[Path] = typer.Option(None, help="TAU-layout folder: train split calibrates, evaluate split measures fidelity."),
    calib: Optional[Path] = typer.Option(None, help="Folder of WAV clips to calibrate on (fidelity then uses the synthetic set)."),
    out_dir: Path = typer.Option(Path("."), "--out", help="Folder for NAME.onnx, NAME_int8.tflite, NAME.manifest.json, NAME.convert.log."),
    force: bool = typer.Option(False, help="Replace files of those names that mcuasc convert did not write."),
    verbose: bool = typer.Option(False, help="Show onnx2tf's and TensorFlow's raw output instead of logging it."),
    validation_clips: int = typer.Option(300, min=1, help="At most this many evaluate-split clips for the fidelity figures "
                                         "(300 clips can show at best ≥ 98.7 % agreement at 95 %; 400 can show 99 %)."),
    activations: str = typer.Option("int8", help="int8, or int16 (TFLite's 16x8 kernels inside the same int8 input and "
                                      "output and int8 weights): decisions closer to float, a larger arena."),
    activation_percentile: Optional[float] = typer.Option(
        None, metavar="P", help="int8 activation ranges: the calibration values' P-th and (100 − P)-th percentiles "
        "[default: 99.999]; 100 for their min/max. int8 activations only (int16 take min/max)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Convert a checkpoint to an int8 TFLite flatbuffer (torch → ONNX → onnx2tf → TFLite, int8 input and
    output, per-channel int8 weights; int8 or int16 activations) and write its manifest.

    The manifest (NAME.manifest.json) carries the front-end config with the model's input scale and zero
    point, labels, ops, the measured TFLM arena, fidelity and tool versions. `mcuasc gen-firmware` and
    `mcuasc simulate` run in the same folder find it there (or take --manifest). Without --data or --calib,
    calibration falls back to mcuasc's synthetic scene set, announced."""
    from mcuasc.convert import ConvertOptions, convert

    with err.status("converting…") as status:
        result = convert(checkpoint, out_dir, data=data, calib=calib, force=force, verbose=verbose,
                         options=ConvertOptions(validation_clips=validation_clips, activations=activations,
                                                **_percentile_option(activation_percentile, activations)),
                         progress=lambda message: status.update(f"convert: {escape(message)}…"))
    m = result.manifest
    if as_json:
        out.print_json(m.to_json())
        return
    for note in result.notes:
        err.print(f"note: {escape(note)}")
    table = Table(title=f"{checkpoint.name} → {m.files['tflite']} ({result.seconds:.0f} s)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    limits = m.dcase_limits
    fid = m.fidelity
    worst = sorted(m.layer_sqnr, key=lambda r: r["sqnr_db"])[:3]
    rows = [
        ("architecture", f"{m.arch}, {m.parameters:,} parameters, {m.macs / 1e6:.2f} MMAC"),
        ("DCASE limits", ("within" if limits["within"] else "OVER") + f" (≤ {limits['max_params']:,} params, ≤ {limits['max_macs'] / 1e6:g} MMAC)"),
        ("ops", f"{len(m.ops)}: " + ", ".join(f"{k} {v}" for k, v in m.op_counts.items())),
        ("flatbuffer", f"{m.flatbuffer_bytes:,} bytes"),
        ("TFLM arena", f"{m.tflm_arena_bytes:,} bytes (measured with the TFLM runtime)"),
        ("activations", m.graph["activations"] + _ranges_summary(m.graph["activation_ranges"])),
        ("input int8", f"{tuple(m.input.shape)}, scale {m.input.scale:.6g} "
                       f"{'(log-mel after Residual Normalization)' if m.frontend.residual_norm else 'dB'}, zero point {m.input.zero_point}"),
        ("saturated features", f"{100 * m.calibration['saturated_fraction_calibration']:.3f} % calibration, "
                               f"{100 * m.calibration['saturated_fraction_validation']:.3f} % validation"),
        ("fidelity", f"{100 * fid['agreement']:.1f} % top-1 agreement on {fid['clips']} clips ({fid['flips']} flips, 95 % interval "
                     f"{100 * fid['agreement_ci95'][0]:.1f}–{100 * fid['agreement_ci95'][1]:.1f} %); accuracy float "
                     f"{100 * fid['float_accuracy']:.1f} % → int8 {100 * fid['int8_accuracy']:.1f} %; log loss "
                     f"{fid['float_log_loss']:.3f} → {fid['int8_log_loss']:.3f}; logit SQNR {fid['logit_sqnr_db']:.1f} dB"),
        ("TFLM", f"logits identical to the reference kernels' on {fid['tflm_bit_exact_clips']} of {fid['clips']} clips"),
        ("lowest SQNR", "; ".join(f"#{r['index']} {r['op']} {r['sqnr_db']:.1f} dB" for r in worst)),
        ("calibration", f"{m.calibration['clips']} clips: {m.calibration['source']}"),
        ("written", ", ".join(str(result.out_dir / f) for f in (m.files["onnx"], m.files["tflite"])) + f", {result.manifest_path}"),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    out.print(table)


def _ranges_summary(ranges: dict) -> str:
    if ranges["method"] != "percentile":
        return ", ranges: calibration min/max"
    return (f", ranges: {ranges['percentile']:g}th percentile of the calibration values "
            f"({ranges['narrowed']} of {ranges['tensors']} narrower than min/max)")


@app.command(name="gen-firmware")
def gen_firmware_command(
    board: str = typer.Option(..., help="Board file in boards/ (mcuasc boards lists them), e.g. nrf52840."),
    manifest: Optional[Path] = typer.Option(None, help="NAME.manifest.json from mcuasc convert [default: the one in this folder]."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Project folder [default: ./firmware-BOARD]."),
    test_clip: Optional[Path] = typer.Option(None, help="WAV for the boot self-test [default: a synthetic street scene]."),
    force: bool = typer.Option(False, help="Generate even if the board cannot run the model (sample rate, flash, RAM), "
                                           "or into a non-empty folder gen-firmware did not write."),
    as_json: bool = typer.Option(False, "--json", help="Print the project's description (budget, files, self-test) as JSON."),
) -> None:
    """Render a TFLM C++ project for a board: the model as a const array, an op resolver with exactly its ops, the
    measured arena plus a margin, the front end exactly as simulate compiles it, the application (capture, front
    end, model, console) and a boot self-test whose expected results come from simulate.

    Finds the model through NAME.manifest.json in the current folder (what mcuasc convert wrote) or --manifest.
    Flash and RAM are checked against the board, and the front end's sample rate against its microphone, before
    anything is written: a model that does not fit is refused with the numbers (exit 2) unless --force."""
    from mcuasc.firmware import generate_firmware
    from mcuasc.firmware.generate import FirmwareRefused

    try:
        with err.status(f"rendering the {board} project (self-test clip simulated, front end cross-compiled for its budget)…"):
            result = generate_firmware(board, out_dir, manifest=manifest, test_clip=test_clip, force=force)
    except FirmwareRefused as refused:
        err.print(_budget_table(refused.project.budget))
        raise
    project = result.project
    if as_json:
        out.print_json(json.dumps(project.description()))
        return
    out.print(_budget_table(project.budget))
    for reason in project.refusals:
        err.print(f"[bold yellow]warning (--force):[/] {escape(reason)}", highlight=False)
    st = project.self_test
    out.print(f"self-test: {escape(st.source)}, features crc32 0x{st.features_crc32:08x}, int8 logits {st.logits.tolist()} (from simulate)")
    out.print(f"wrote {len(project.files) + 1} files to {result.out_dir}; build and flash: {result.out_dir / 'README.md'}")


def _budget_table(budget) -> Table:
    table = Table("region", "item", "bytes", "how", title=f"{budget.board.name}: budget ({budget.board.description})")
    for line in budget.lines:
        table.add_row(line.region, escape(line.item), f"{line.bytes:,}", line.how)
    for region in ("flash", "RAM"):
        spare = budget.spare(region)
        table.add_row(region, f"[bold]total[/] of {budget.capacity(region):,}", f"[bold]{budget.total(region):,}[/]",
                      f"[{'green' if spare >= 0 else 'red'}]spare {spare:,}[/]")
    return table


@app.command()
def emulate(
    firmware: Path = typer.Argument(..., help="Folder written by mcuasc gen-firmware --board mps2-an386."),
    audio: Optional[list[Path]] = typer.Argument(None, help="WAV clips to classify on the emulated board, and to simulate for comparison."),
    tflm_dir: Optional[Path] = typer.Option(None, help="TensorFlow Lite Micro source tree with its downloads [default: $MCUASC_TFLM_DIR]."),
    kernels: str = typer.Option("cmsis_nn", help="cmsis_nn (CMSIS-NN kernels) or reference (TFLM's reference kernels)."),
    tflm_lib: Optional[Path] = typer.Option(None, help="A libtflm.a already built for the Cortex-M4 with those kernels, "
                                                       "linked instead of compiling TFLM [default: compile it]."),
) -> None:
    """Build the mps2-an386 firmware against a TFLM tree and run it under qemu-system-arm: the boot self-test must
    pass and the logits on every clip must equal simulate's; prints instructions per stage (QEMU -icount).
    Exit 0 when all of it holds, 1 otherwise, 2 on bad input."""
    from mcuasc.firmware.emulate import emulate as run_emulation
    from mcuasc.firmware.emulate import firmware_deployment, read_clips

    pcm = read_clips(firmware_deployment(firmware)[1], audio) if audio else None
    with err.status(f"building the firmware against TFLM ({kernels} kernels) and running it under QEMU…"):
        report = run_emulation(firmware, tflm_dir=tflm_dir, kernels=kernels, tflm_lib=tflm_lib, pcm_clips=pcm)
    table = Table("clip", "scene", "int8 logits", "== simulate", "front end instr.", "model instr.",
                  title=f"{firmware} on qemu-system-arm -M mps2-an386 ({kernels} kernels, arena used {report.arena_used_bytes} B)")
    rows = [("self-test", report.self_test, None)] + [
        (path.name, result, expected) for path, result, expected in zip(audio or [], report.clips, report.expected_clip_logits)]
    for name, result, expected in rows:
        if result is None:
            continue
        same = "—" if expected is None else ("yes" if result.logits == expected else "[red]NO[/]")
        table.add_row(escape(name), result.label, ",".join(map(str, result.logits)), same,
                      f"{result.frontend_instructions:,}", f"{result.model_instructions:,}")
    out.print(table)
    ok = report.self_test_passed and report.clips_match_simulate
    out.print(("[bold green]PASS[/]" if ok else "[bold red]FAIL[/]") + f": self-test {'PASS' if report.self_test_passed else 'FAIL'}"
              + (f", {len(report.clips)} clips {'identical to' if report.clips_match_simulate else 'DIFFERENT from'} simulate" if audio else ""))
    if not ok:
        err.print(escape(report.output[-2000:]))
        raise typer.Exit(1)


@app.command(name="simulate")
def simulate_command(
    audio: list[str] = typer.Argument(..., help="WAV file(s), folder(s), quoted glob(s) or a TAU split CSV such as "
                                                "evaluation_setup/fold1_evaluate.csv (labels then come from it)."),
    model: Optional[Path] = typer.Option(None, help="The int8 flatbuffer (NAME_int8.tflite); its manifest is the one beside it."),
    manifest: Optional[Path] = typer.Option(None, help="NAME.manifest.json from mcuasc convert [default: the one in this folder]."),
    firmware: Optional[Path] = typer.Option(None, help="Folder written by mcuasc gen-firmware: compile its front end "
                                                      "instead of rendering one from the manifest."),
    hop: Optional[float] = typer.Option(None, help="Seconds between windows on audio longer than one clip [default: the clip length]."),
    jobs: Optional[int] = typer.Option(None, help="Processes for many clips [default: the cores]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per clip, one a line, and nothing else."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write one CSV row per window to this file."),
    force: bool = typer.Option(False, help="Replace --csv if it exists."),
) -> None:
    """Prove on the host that the deployed pipeline is bit-exact: each clip through the integer front end in
    numpy and in C (compiled as the firmware gets it), then the int8 model on TFLite's reference kernels and on
    the TFLM runtime; features and logits must match byte for byte.

    Finds the model through NAME.manifest.json in the current folder (what mcuasc convert wrote), or
    --manifest / --model. Exit 0 when everything is bit-exact, 1 on any mismatch (the first divergent
    feature or operator is named), 2 on bad input."""
    from mcuasc.simulate import SimulateOptions, load_deployment, resolve_clips, simulate_many
    from mcuasc.outputs import write_new_file
    from mcuasc.simulate.report import csv_text

    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs {jobs} is not a process count; pass 1 or more.")
    if hop is not None and hop <= 0:
        raise InputError(f"--hop {hop} is not a positive number of seconds; pass e.g. --hop 0.5.")
    if csv_path is not None and csv_path.exists() and not force:
        raise InputError(f"{csv_path} already exists; pass --force to replace it or choose another --csv.")
    deployment = load_deployment(manifest=manifest, model=model, firmware=firmware)
    sources = resolve_clips(audio, deployment.labels)
    options = SimulateOptions(hop_seconds=hop)
    if as_json:
        results = simulate_many(deployment, sources, options, jobs=jobs,
                                progress=lambda r: print(json.dumps(r.to_dict()), flush=True))
    elif len(sources) == 1:
        with err.status(f"simulating {escape(str(sources[0].path))}…"):
            results = simulate_many(deployment, sources, options, jobs=1)
    else:
        with _progress() as bar:
            task = bar.add_task(f"simulating {len(sources)} clips", total=len(sources))
            results = simulate_many(deployment, sources, options, jobs=jobs, progress=lambda r: bar.advance(task))
    if csv_path is not None:
        write_new_file(csv_path, csv_text(results).encode(), force=force, option="--csv")
    if not as_json:
        _print_simulation(deployment, results, csv_path)
    if not all(r.bit_exact for r in results if r.error is None):
        raise typer.Exit(1)
    if any(r.error is not None for r in results):
        raise typer.Exit(2)


def _print_simulation(deployment, results, csv_path: Optional[Path]) -> None:
    from mcuasc.simulate.report import mismatch_lines, stage_seconds, summarize

    m = deployment.manifest
    engines = f"{deployment.model_path.name} on TFLite reference kernels and TFLM; C front end {deployment.frontend_origin}"
    if len(results) == 1:
        r = results[0]
        if r.error is not None:
            err.print(f"[bold red]error:[/] {escape(r.error)}", highlight=False)
            return
        for note in r.notes:
            err.print(f"note: {escape(note)}")
        truth = "" if r.source.label is None else (" (correct)" if r.predicted == r.source.label else f" (true: {r.source.label})")
        out.print(f"[bold]{escape(r.source.path.name)}[/] → [bold]{escape(r.predicted)}[/]{escape(truth)}")
        table = Table("scene", "score (dequantized logit)", "probability", title=f"top scenes ({len(r.windows)} window"
                      f"{'s' if len(r.windows) > 1 else ''}, {escape(engines)})")
        for label, score, probability in r.top():
            table.add_row(escape(label), f"{score:.3f}", f"{100 * probability:.1f} %")
        out.print(table)
    else:
        table = Table("group", "clips", "windows", "bit-exact clips", "unreadable", "accuracy", "log loss",
                      title=f"{len(results)} clips: {escape(engines)}")
        for row in summarize(results):
            accuracy = "—" if row.accuracy is None else f"{100 * row.accuracy:.1f} % of {row.labelled}"
            log_loss = "—" if row.log_loss is None else f"{row.log_loss:.3f}"
            table.add_row(row.group, str(row.clips), str(row.windows), f"{row.bit_exact} / {row.clips - row.unreadable}",
                          str(row.unreadable), accuracy, log_loss)
        out.print(table)
        seconds = stage_seconds(results)
        total = sum(seconds.values()) or 1.0
        out.print("time per stage: " + ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in seconds.items()))
        for r in results:
            if r.error is not None:
                err.print(f"[bold red]unreadable:[/] {escape(r.error)}", highlight=False)
    for line in mismatch_lines(results):
        out.print(f"[bold red]mismatch[/] {escape(line)}", highlight=False)
    if csv_path is not None:
        out.print(f"CSV: {csv_path}")
    checked = [r for r in results if r.error is None]
    windows = sum(len(r.windows) for r in checked)
    features = windows * m.frontend.shape[0] * m.frontend.shape[1] * m.frontend.shape[2]
    if all(r.bit_exact for r in checked):
        out.print(f"[bold green]BIT-EXACT[/]: {windows} window{'s' if windows != 1 else ''} of {len(checked)} clip"
                  f"{'s' if len(checked) != 1 else ''}: features numpy == C ({features:,} int8 values), "
                  f"logits TFLite-ref == TFLM ({windows * len(m.labels)} int8 values)")
    else:
        bad_features = sum(not w.features_bit_exact for r in checked for w in r.windows)
        bad_logits = sum(not w.logits_bit_exact for r in checked for w in r.windows)
        out.print(f"[bold red]MISMATCH[/]: features differ in {bad_features} and logits in {bad_logits} of {windows} windows")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("mcuasc-demo"), "--out", help="Folder for the demo's files."),
) -> None:
    """The main job, end to end as far as the pipeline goes today: a synthetic scene clip through every front-end
    preset (numpy == C), a small synthetic scene set, a teacher trained briefly and a student distilled from it,
    the student converted to int8 TFLite, then simulated bit-exact (exit 1 on any mismatch)."""
    from mcuasc.demo import run_demo

    report = run_demo(out_dir, console=out)
    if not report.bit_exact:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except ToolError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
