"""The README's main job, as far as the pipeline goes today: a synthetic scene clip through every front-end
preset (numpy vs C, bit-exact), then a small synthetic scene set, a briefly trained teacher and a student
distilled from it, then converts the student to int8 TFLite with its manifest, and simulates the clip and the
validation split (both front ends, both interpreters, byte for byte). The student is the nRF52840 board recipe
(16 kHz, 64 mels) distilled from the 44.1 kHz teacher; gen-firmware renders its nrf52840 project in between.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mcuasc.audio import fit_to_clip, read_wav, write_wav
from mcuasc.outputs import claim_output_dir
from mcuasc.features import save_npy
from mcuasc.frontend import PRESETS, FloatFrontend, IntegerFrontend
from mcuasc.frontend.host import CFrontend
from mcuasc.testsignals import street_scene

MARKER = ".mcuasc-demo"


@dataclass
class DemoReport:
    out_dir: Path
    clip: Path
    rows: list[dict[str, object]] = field(default_factory=list)
    teacher: Path | None = None
    student: Path | None = None
    manifest: Path | None = None
    firmware: Path | None = None
    simulation: list = field(default_factory=list)  # ClipResults of stage 5

    @property
    def bit_exact(self) -> bool:
        return all(bool(r["bit_exact"]) for r in self.rows) and all(r.bit_exact for r in self.simulation)


def prepare_out_dir(out_dir: Path) -> None:
    """Use out_dir only if it is new, empty, or an earlier demo's: never overwrite someone else's files."""
    claim_output_dir(out_dir, MARKER, "mcuasc demo")


def run_demo(out_dir: Path, console: Console | None = None) -> DemoReport:
    console = console or Console()
    prepare_out_dir(out_dir)
    clip_path = out_dir / "street_scene.wav"
    write_wav(clip_path, street_scene(), 44100, bits=24)  # the TAU dataset's format
    console.print(f"wrote a synthetic 1-s street scene to {clip_path} (24-bit, 44.1 kHz)")
    report = DemoReport(out_dir, clip_path)
    for name, cfg in PRESETS.items():
        audio = read_wav(clip_path, cfg.sample_rate)
        pcm, _ = fit_to_clip(audio.samples, cfg.clip_samples)
        start = time.perf_counter()
        integer = IntegerFrontend(cfg)(pcm)
        numpy_ms = (time.perf_counter() - start) * 1e3
        c = CFrontend(cfg)(pcm)
        mismatches = int(np.count_nonzero(integer != c))
        reference = FloatFrontend(cfg).log_mel_db(pcm[None])[0]
        measured = IntegerFrontend(cfg).log_mel_db(pcm[None])[0]
        within = reference >= reference.max() - 60
        error = np.abs(measured - reference)[within]
        save_npy(integer, out_dir / f"features.{name}.npy", force=True)
        report.rows.append({
            "preset": name, "shape": "×".join(map(str, cfg.shape)), "bit_exact": mismatches == 0,
            "mismatches": mismatches, "error_mean_db": float(error.mean()), "error_max_db": float(error.max()),
            "numpy_ms": numpy_ms,
        })
    table = Table(title="integer front end: numpy vs C (compiled for this host) vs float64 reference")
    for column in ("preset", "features", "numpy == C", "|int − float| mean", "max", "numpy time"):
        table.add_column(column)
    for r in report.rows:
        verdict = "[green]bit-exact[/]" if r["bit_exact"] else f"[red]{r['mismatches']} values differ[/]"
        table.add_row(str(r["preset"]), str(r["shape"]), verdict, f"{r['error_mean_db']:.4f} dB",
                      f"{r['error_max_db']:.4f} dB", f"{r['numpy_ms']:.1f} ms")
    console.print(table)
    console.print(f"features saved as {out_dir}/features.<preset>.npy")
    train_and_distill(report, console)
    convert_student(report, console)
    generate_firmware_for_board(report, console)
    simulate_student(report, console)
    return report


def generate_firmware_for_board(report: DemoReport, console: Console, board: str = "nrf52840") -> None:
    """Stage 4: the TFLM project for the board, its budget checked, its self-test taken from simulate."""
    from mcuasc.firmware import generate_firmware

    with console.status(f"generating the {board} firmware…"):
        result = generate_firmware(board, report.out_dir / f"firmware-{board}", manifest=report.manifest)
    budget = result.project.budget
    table = Table(title=f"stage 4: gen-firmware for {board} (budget checked before writing)")
    for column in ("flash used", "RAM used", "RAM spare", "TFLM arena + margin", "self-test logits", "fits"):
        table.add_column(column)
    arena = next(line.bytes for line in budget.lines if line.item.startswith("TFLM arena"))
    table.add_row(f"{budget.total('flash'):,} of {budget.capacity('flash'):,} B", f"{budget.total('RAM'):,} of {budget.capacity('RAM'):,} B",
                  f"{budget.spare('RAM'):,} B", f"{arena:,} B", str(result.project.self_test.logits.tolist()),
                  "yes")
    console.print(table)
    report.firmware = result.out_dir
    console.print(f"firmware project: {result.out_dir} (build and flash: {result.out_dir / 'README.md'})")


def simulate_student(report: DemoReport, console: Console) -> None:
    """Stage 5: the street clip and the validation split through both front ends and both interpreters."""
    from mcuasc.simulate import load_deployment, resolve_clips, simulate_many, summarize
    from mcuasc.simulate.report import mismatch_lines

    deployment = load_deployment(manifest=report.manifest, firmware=report.firmware)
    split = report.out_dir / "scenes" / "evaluation_setup" / "fold1_evaluate.csv"
    sources = resolve_clips([report.clip, split], deployment.labels)
    with console.status(f"simulating {len(sources)} clips: numpy and C front ends, TFLite reference kernels and TFLM…"):
        start = time.perf_counter()
        results = simulate_many(deployment, sources)
        seconds = time.perf_counter() - start
    report.simulation = results
    overall = summarize(results[1:])[0]
    table = Table(title="stage 5: simulate (features numpy == C, logits TFLite-ref == TFLM, byte for byte)")
    for column in ("clips", "features bit-exact", "logits bit-exact", "validation accuracy", "street clip →", "time"):
        table.add_column(column)
    table.add_row(str(len(results)), f"{sum(r.features_bit_exact for r in results)} / {len(results)}",
                  f"{sum(r.logits_bit_exact for r in results)} / {len(results)}",
                  f"{100 * overall.accuracy:.1f} %" if overall.accuracy is not None else "—", results[0].predicted,
                  f"{seconds:.1f} s")
    console.print(table)
    for line in mismatch_lines(results):
        console.print(f"[red]mismatch[/] {line}")
    console.print(f"the same check from the shell: cd {report.out_dir} && mcuasc simulate {report.clip.name} "
                  f"--firmware {report.firmware.name if report.firmware else ''}")


def convert_student(report: DemoReport, console: Console) -> None:
    """Stage 2: the distilled student to int8 TFLite, calibrated on the demo's scenes, with its manifest."""
    from mcuasc.convert import convert

    with console.status("converting the student: ONNX → onnx2tf → int8 TFLite…"):
        result = convert(report.student, report.out_dir, data=report.out_dir / "scenes", force=True)
    m = result.manifest
    table = Table(title="stage 2: convert (int8 TFLite, fidelity on the validation split)")
    for column in ("ops", "flatbuffer", "TFLM arena", "input scale / zero point", "agreement", "accuracy float → int8", "time"):
        table.add_column(column)
    table.add_row(str(len(m.ops)), f"{m.flatbuffer_bytes:,} B", f"{m.tflm_arena_bytes:,} B",
                  f"{m.input.scale:.4f} dB / {m.input.zero_point}", f"{100 * m.fidelity['agreement']:.0f} %",
                  f"{100 * m.fidelity['float_accuracy']:.1f} % → {100 * m.fidelity['int8_accuracy']:.1f} %",
                  f"{result.seconds:.0f} s")
    console.print(table)
    report.manifest = result.manifest_path
    console.print(f"manifest: {result.manifest_path}")


def train_and_distill(report: DemoReport, console: Console, clips_per_class: int = 6) -> None:
    """Stage 1 in miniature: synth-data, a teacher trained for two epochs, a student distilled from it."""
    import dataclasses

    from mcuasc.data.synth import synthesize_dataset
    from mcuasc.train import recipe_for, train

    data = report.out_dir / "scenes"
    synthesize_dataset(data, clips_per_class=clips_per_class, seed=0)
    console.print(f"synthesized {clips_per_class} clips per scene in {data} (TAU layout, devices s4–s6 unseen in training)")
    results = Table(title="stage 1: train and distill on the synthetic scenes (validation split)")
    for column in ("model", "epochs", "accuracy", "log loss", "time"):
        results.add_column(column)
    for name, config, out, teacher in (
        ("teacher (BC-ResNet c=80)", dataclasses.replace(recipe_for("bcresnet-teacher"), epochs=2, batch_size=8),
         report.out_dir / "teacher.pt", None),
        ("student (nrf52840 recipe), distilled", dataclasses.replace(recipe_for("bcresnet-nrf52840", distill=True),
                                                                    epochs=12, warmup_epochs=2, batch_size=8),
         report.out_dir / "student.pt", report.out_dir / "teacher.pt"),
    ):
        with console.status(f"training the {name}…"):
            start = time.perf_counter()
            result = train(data, config, out, teacher=teacher)
        best = result.best
        results.add_row(name, str(config.epochs), f"{best.val_accuracy:.3f}", f"{best.val_log_loss:.3f}",
                        f"{time.perf_counter() - start:.0f} s")
    console.print(results)
    report.teacher, report.student = report.out_dir / "teacher.pt", report.out_dir / "student.pt"
    console.print(f"checkpoints: {report.teacher}, {report.student}")
