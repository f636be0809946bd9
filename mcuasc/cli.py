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


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("mcuasc-demo"), "--out", help="Folder for the demo's files."),
) -> None:
    """The main job, end to end as far as the pipeline goes today: synthesize a scene clip, compute its
    features with the integer numpy and the C front end for every preset, and prove they are bit-identical."""
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
