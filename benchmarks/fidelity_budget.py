"""Where the float-vs-int8 difference comes from: the integer front end, int8 weights, or int8 activations.

    .venv/bin/python benchmarks/fidelity_budget.py [--models bcresnet-nrf52840 bcresnet-student] [--clips-per-class 40] [--epochs 30]
        [--finetune-epochs 8] [--seed 0] [--schedule recipe|distillation] [--keep DIR | --reuse DIR]
        [--held-out-clips-per-class 300 [--held-out-seed 1]]

Each model is trained with labels only (its recipe, mcuasc.train.recipe_for; --seed: the training's seed;
--schedule distillation: a BC-ResNet on the seed's distillation recipe, warm-up to 0.006 then cosine, still without a
teacher) on a synthetic scene set (seed 0) and converted (calibration on its train split). On the evaluate split (or, with
--held-out-clips-per-class N, on a second synthetic set of N clips per class drawn with seed 1, or --held-out-seed,
from the evaluate split's devices, none of them seen in training or calibration: a larger set narrows the agreement's interval), the float torch
model on the float front end is the reference, and each row changes one thing and reports the logits' SQNR against the
reference (signal: the reference logits; noise: the difference) and the top-1 agreement with it (with its Wilson 95 %
interval: one flip in 450 clips is 0.2 points):
- integer front end: the float model on the deployed front end's int8 features, dequantized;
- int8 weights: the float model's inference form (batch-norms folded) with its weights rounded per output channel to
  int8, as the converter does, on the float front end;
- int8 weights, biases corrected: the same, with the inference form convert exports, whose biases are corrected for
  that rounding on its calibration clips (mcuasc.models.export.correct_weight_rounding_bias);
- int8 model: the converted flatbuffer on TFLite's reference kernels, on the integer front end (what convert's
  fidelity figures and the device compute);
- int8 activations alone: the checkpoint's convolution weights first rounded per output channel to int8 in its own
  (training) form, saved, converted: folding a batch-norm scales a channel's weights by one factor, so they stay on
  the converter's grid and only its activation (and constant-operand) rounding is left; this row's reference is
  that rounded float model (BC-ResNet's stem, re-formed by StemNormExpand, is the exception);
- int8 model, min/max ranges: the same with every intermediate activation's int8 range the calibration set's min/max
  (the TFLite converter's own choice) instead of convert's default, its
  0.001th…99.999th percentiles (mcuasc.convert.ranges);
- int16 activations: the model converted with --activations int16 (TFLite's 16x8 kernels inside the same int8
  input, output and weights), on its own integer front end (a symmetric int8 quantization of the same features).
"Near ties" counts the clips whose reference top-1/top-2 logit gap is smaller than twice the int8 model's logit
error (RMS): those are the clips int8 can flip. "TFLM == reference": on how many evaluate clips the TFLM runtime's int8
logits equal the reference kernels' byte for byte (for the two deployable rows: int8 model, int16 activations).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import machine, markdown_table
from mcuasc.checkpoint import load_checkpoint, save_checkpoint
from mcuasc.convert import ConvertOptions, analysis, convert
from mcuasc.convert.pipeline import evenly
from mcuasc.data.cache import load_pcm
from mcuasc.data.synth import synthesize_dataset
from mcuasc.data.tau import TauDataset
from mcuasc.frontend import FloatFrontend, IntegerFrontend
from mcuasc.models import ARCHITECTURES
from mcuasc.models.export import export_form, input_residual_norm, int8_weight_grid
from mcuasc.train import quantization_aware_recipe, recipe_for, train


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference ** 2).sum() / max(((reference - other) ** 2).sum(), 1e-30)))


def int8_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Every convolution's weights rounded as TFLite's converter rounds them (mcuasc.models.export.int8_weight_grid)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = int8_weight_grid(module.weight)
    return model


def budget(name: str, work: Path, epochs: int, finetune_epochs: int, seed: int, schedule: str,
           trained: bool = False, held_out: Path | None = None) -> list[list[object]]:
    scenes = work / "scenes"
    checkpoint = work / f"{name}.pt"
    # Without a teacher, recipe_for(distill=True) is the distillation schedule on labels alone.
    recipe = recipe_for(name, distill=schedule == "distillation")
    if not trained:
        train(scenes, dataclasses.replace(recipe, epochs=epochs, seed=seed), checkpoint)
    rows = sources(name, checkpoint, work, scenes, held_out)
    if finetune_epochs:
        # The same number of further epochs at the same rate, with and without int8 simulated: what the
        # fine-tuning itself buys, not the extra training.
        tuning = dataclasses.replace(quantization_aware_recipe(name, finetune_epochs), seed=seed)
        for label, config in ((f"+{finetune_epochs} epochs float (control)", dataclasses.replace(tuning, quantization_aware=False)),
                              (f"+{finetune_epochs} epochs finetune-int8", tuning)):
            tuned = work / f"{name}-{'qat' if config.quantization_aware else 'control'}.pt"
            train(scenes, config, tuned, init_from=checkpoint)
            rows += [[name, f"{label}: {r[1]}", *r[2:]] for r in sources(name, tuned, work, scenes, held_out) if r[1] in ("float (reference)", "int8 model")]
    return rows


def nchw(features: np.ndarray) -> torch.Tensor:
    """Front-end features (clips, mels, frames, channels) as the torch models' input."""
    return torch.from_numpy(np.ascontiguousarray(features.transpose(0, 3, 1, 2))).float()


def row(name: str, label: str, reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> list[object]:
    """One table row: logits against their reference (SQNR, top-1 agreement with its Wilson 95 % interval), and
    their accuracy."""
    agreeing = int((logits.argmax(1) == reference.argmax(1)).sum())
    low, high = analysis.agreement_interval(agreeing, len(logits))
    return [name, label, f"{sqnr_db(reference, logits):.1f}", f"{100 * agreeing / len(logits):.1f} %",
            f"{100 * low:.1f}–{100 * high:.1f} %", f"{100 * (logits.argmax(1) == labels).mean():.1f} %"]


def int8_model_outputs(manifest, out_dir: Path, features: np.ndarray) -> np.ndarray:
    """A converted model's int8 logits on TFLite's reference kernels, fed the integer front end's features."""
    interpreter = analysis.reference_interpreter((out_dir / manifest.files["tflite"]).read_bytes())
    return np.stack([analysis.invoke(interpreter, x) for x in features])


def dequantize_outputs(manifest, outputs: np.ndarray) -> np.ndarray:
    return manifest.output.scale * (outputs.astype(np.float64) - manifest.output.zero_point)


def sources(name: str, checkpoint: Path, work: Path, scenes: Path, held_out: Path | None = None) -> list[list[object]]:
    """The rows for one checkpoint: its float model, and each source of difference alone, on the evaluate split of
    held_out if given, else of scenes (scenes' train split always calibrates)."""
    manifest = convert(checkpoint, work / checkpoint.stem, data=scenes).manifest
    minmax_dir = work / f"{checkpoint.stem}-minmax"
    minmax = convert(checkpoint, minmax_dir, data=scenes, options=ConvertOptions(activation_percentile=None)).manifest
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    clips = TauDataset.open(held_out or scenes).split("evaluate")
    pcm = load_pcm(clips, ckpt.frontend)
    labels = np.array([c.label_index for c in clips])
    float_features = FloatFrontend(ckpt.frontend)(pcm)
    int8_features = IntegerFrontend(manifest.frontend)(pcm)
    with torch.no_grad():
        reference = model(nchw(float_features)).numpy().astype(np.float64)
        # The deployed front end's int8 features, dequantized, through the graph the converter exported (the input
        # Residual Normalization, if any, is computed by the front end).
        shape, without_input_norm = ARCHITECTURES[ckpt.arch].input_shape, input_residual_norm(model) is not None
        graph = export_form(model, shape, without_input_norm=without_input_norm)
        dequantized = manifest.input.scale * (int8_features.astype(np.float32) - manifest.input.zero_point)
        from_integer_frontend = graph(nchw(dequantized)).numpy()
        graph_float_input = FloatFrontend(manifest.frontend)(pcm)
        with_int8_weights = int8_weights(graph)(nchw(graph_float_input)).numpy()
        # What convert exports: its calibration clips correct the biases for the weights' rounding.
        calibration_clips = evenly(TauDataset.open(scenes).split("train"), ConvertOptions().calibration_clips)
        calibration = FloatFrontend(manifest.frontend)(load_pcm(calibration_clips, ckpt.frontend))
        corrected = export_form(model, shape, without_input_norm=without_input_norm, calibration=nchw(calibration))
        with_corrected_int8_weights = int8_weights(corrected)(nchw(graph_float_input)).numpy()
    # Narrowing keeps the input's min/max range, so both models take the same front-end features.
    assert minmax.frontend == manifest.frontend
    int8_outputs = int8_model_outputs(manifest, work / checkpoint.stem, int8_features)
    int8_model = dequantize_outputs(manifest, int8_outputs)
    tflm_identical = sum(analysis.tflm_matches((work / checkpoint.stem / manifest.files["tflite"]).read_bytes(),
                                               manifest.tflm_arena_bytes, int8_features, int8_outputs))
    int8_minmax = dequantize_outputs(minmax, int8_model_outputs(minmax, minmax_dir, int8_features))
    int16_row = int16_activations(name, checkpoint, work / f"{checkpoint.stem}-int16", scenes, manifest, pcm, int8_features,
                                  reference, labels)
    ordered = np.sort(reference, axis=1)
    gap = ordered[:, -1] - ordered[:, -2]
    error_rms = float(np.sqrt(((int8_model - reference) ** 2).mean()))
    rows = [[name, "float (reference)", "—", "100 %", "", f"{100 * (reference.argmax(1) == labels).mean():.1f} %"],
            row(name, "integer front end", reference, from_integer_frontend, labels),
            row(name, "int8 weights", reference, with_int8_weights, labels),
            row(name, "int8 weights, biases corrected (as convert exports them)", reference, with_corrected_int8_weights, labels),
            activations_alone(name, ckpt, work / f"{checkpoint.stem}-grid", scenes, pcm, float_features, labels),
            row(name, "int8 model, min/max ranges", reference, int8_minmax, labels),
            row(name, "int8 model", reference, int8_model, labels)]
    for r in rows[:-1]:
        r += ["", ""]
    rows[-1] += [f"{int((gap < 2 * error_rms).sum())} of {len(gap)}", f"{tflm_identical} of {len(gap)}"]
    return rows + [int16_row]


def int16_activations(name: str, checkpoint: Path, out_dir: Path, scenes: Path, int8_manifest, pcm: np.ndarray,
                      int8_features: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> list[object]:
    """The row "int16 activations": the same checkpoint converted with --activations int16, on its own front end."""
    manifest = convert(checkpoint, out_dir, data=scenes, options=ConvertOptions(activations="int16")).manifest
    # int16 activations choose a symmetric int8 input: its own front-end quantization.
    features = int8_features if manifest.frontend == int8_manifest.frontend else IntegerFrontend(manifest.frontend)(pcm)
    outputs = int8_model_outputs(manifest, out_dir, features)
    tflm_identical = sum(analysis.tflm_matches((out_dir / manifest.files["tflite"]).read_bytes(), manifest.tflm_arena_bytes,
                                               features, outputs))
    return [*row(name, f"int16 activations ({manifest.tflm_arena_bytes:,} B arena against {int8_manifest.tflm_arena_bytes:,})",
                 reference, dequantize_outputs(manifest, outputs), labels), "", f"{tflm_identical} of {len(labels)}"]


def activations_alone(name: str, ckpt, out_dir: Path, scenes: Path, pcm: np.ndarray, float_features: np.ndarray,
                      labels: np.ndarray) -> list[object]:
    """The row "int8 activations alone": a checkpoint whose weights already lie on the int8 grid, against its own
    float model."""
    grid = ckpt.build_model()
    int8_weights(grid)
    grid_checkpoint = save_checkpoint(dataclasses.replace(ckpt, state_dict={k: v.clone() for k, v in grid.state_dict().items()}),
                                      out_dir.with_suffix(".pt"))
    manifest = convert(grid_checkpoint, out_dir, data=scenes).manifest
    with torch.no_grad():
        reference = grid(nchw(float_features)).numpy().astype(np.float64)
    logits = dequantize_outputs(manifest, int8_model_outputs(manifest, out_dir, IntegerFrontend(manifest.frontend)(pcm)))
    return row(name, "int8 activations alone (weights on the int8 grid; vs that float model)", reference, logits, labels)


def held_out_set(work: Path, clips_per_class: int, seed: int) -> Path | None:
    """A second synthetic set (its seed not the training set's 0), every clip in its evaluate split (the evaluate
    devices): clips no training or calibration has seen, as many as asked. None for 0 (evaluate on the training set's
    evaluate split)."""
    if not clips_per_class:
        return None
    synthesize_dataset(work / "held-out", clips_per_class, seed=seed, evaluate_share=1.0)
    return work / "held-out"


def reuse(kept: Path, models: list[str]) -> Path:
    """A new folder kept/rerun-<n> whose scene set and checkpoints are links to the kept ones, for budget() to convert
    into without touching the earlier run's results."""
    work = next(kept / f"rerun-{n}" for n in range(1, 1000) if not (kept / f"rerun-{n}").exists())
    work.mkdir()
    (work / "scenes").symlink_to((kept / "scenes").resolve())
    for name in models:
        (work / f"{name}.pt").symlink_to((kept / f"{name}.pt").resolve())
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bcresnet-nrf52840"])
    parser.add_argument("--clips-per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="also fine-tune that many epochs with int8 simulated (mcuasc finetune-int8), beside a float control")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the scene set keeps seed 0)")
    parser.add_argument("--schedule", choices=("recipe", "distillation"), default="recipe",
                        help="each model's own recipe, or (BC-ResNets only) the seed's distillation schedule without a teacher")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (scene set, checkpoints, converted models) to inspect afterwards; "
                             "DIR must not exist yet")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="the scene set and checkpoints an earlier --keep run left in DIR (same models, --clips-per-class, "
                             "--epochs, --schedule and --seed): convert and measure them again without training; "
                             "converted models go to DIR/rerun-<n>")
    parser.add_argument("--held-out-clips-per-class", type=int, default=0, metavar="N",
                        help="evaluate on a second synthetic set (seed 1) of N clips per class from the evaluate devices, "
                             "never seen in training or calibration, instead of the scene set's evaluate split")
    parser.add_argument("--held-out-seed", type=int, default=1, help="the held-out set's seed (not 0, the training set's)")
    args = parser.parse_args()
    if args.reuse is not None:
        missing = [f"{n}.pt" for n in args.models if not (args.reuse / f"{n}.pt").exists()]
        missing += [] if (args.reuse / "scenes").is_dir() else ["scenes"]
        if missing or args.finetune_epochs or args.keep is not None:
            parser.error(f"--reuse {args.reuse} needs the scenes and checkpoints of an earlier --keep run (missing: "
                         f"{', '.join(missing) or 'none'}), and takes neither --keep nor --finetune-epochs.")
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep} already exists; give a new directory so nothing in it is overwritten.")
    if args.schedule == "distillation" and not all(name.startswith("bcresnet") for name in args.models):
        parser.error("--schedule distillation is the BC-ResNet distillation recipe; give only bcresnet-* models.")
    if args.held_out_clips_per_class < 0 or args.held_out_clips_per_class == 1:
        parser.error("--held-out-clips-per-class takes 0 (the evaluate split) or at least 2 clips per class.")
    if args.held_out_seed == 0:
        parser.error("--held-out-seed 0 is the training set's seed; give another so no clip is one the model trained on.")
    print("# float vs int8: where the difference comes from\n")
    print(machine(), "\n")
    rows = []
    if args.reuse is not None:
        work = reuse(args.reuse, args.models)
        print(f"reusing the scene set and checkpoints in {args.reuse} (no training); converted models in {work}\n")
        held_out = held_out_set(work, args.held_out_clips_per_class, args.held_out_seed)
        for name in args.models:
            rows += budget(name, work, args.epochs, 0, args.seed, args.schedule, trained=True, held_out=held_out)
    else:
        if args.keep is not None:
            args.keep.mkdir(parents=True)
        with contextlib.nullcontext(str(args.keep)) if args.keep is not None else tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            synthesize_dataset(work / "scenes", args.clips_per_class, seed=0)
            held_out = held_out_set(work, args.held_out_clips_per_class, args.held_out_seed)
            for name in args.models:
                rows += budget(name, work, args.epochs, args.finetune_epochs, args.seed, args.schedule, held_out=held_out)
    schedule = "each model's recipe" if args.schedule == "recipe" else "the seed's distillation schedule (no teacher)"
    evaluated = (f"evaluated on a held-out set of {args.held_out_clips_per_class} clips per class (seed {args.held_out_seed}, "
                 "evaluate devices)"
                 if args.held_out_clips_per_class else "evaluated on its evaluate split")
    print(f"Synthetic set: {args.clips_per_class} clips per class (30 % evaluate), labels only, {schedule}, "
          f"{args.epochs} epochs, training seed {args.seed}; {evaluated}.\n")
    print(markdown_table(["model", "what changes", "logit SQNR dB", "top-1 agreement", "95 % interval", "accuracy", "near ties",
                          "TFLM == reference"], rows))


if __name__ == "__main__":
    main()
