"""Fidelity of the IAC U-Net to the U-Net it improves, on the bundled sample.

For each seed: Stage I (the U-Net), then Stage III with one fixed genotype in both implant
modes (``residual`` and the paper's ``replace``), the paper's ``replace`` with a 2x longer
Stage III, and the budget-matched ``unet_continued``
(the U-Net trained further for as many epochs as Stage III). Every Stage III run and
``unet_continued`` score epoch 0 and select on the per-case hard Dice on ``val_dt``
(``monitor: val_case_dice``). Prints the per-case Dice on ``val_dt`` of each model next to the
U-Net, and the Dice of each on the ``test_dt`` volumes (``data.test_fraction``, default 0.2),
which nothing was trained or selected on.

Honesty note: the sample has five scans, so ``val_dt`` and ``test_dt`` are one scan each: one
case selects, one case scores, no test of significance is possible, and a difference between
the models shows the protocol, not a gain.

The genotype is fixed (``--genotype``; default ``benchmarks/fidelity_genotype.json``, the genotype
of epoch 2 of a 2-epoch Stage II search, 1 warm-up epoch, C=8, on seed 0 at this budget) so that
the modes differ only in how the cell is implanted; ``--search`` runs Stage II per seed instead
(slow on a CPU: a search epoch cost minutes here).

The budget is reduced for a CPU and stated in the output (base U-Net with ``base_filters`` 8,
64x64 patches, a few epochs per stage; see the arguments). Run from the repository root:

    python benchmarks/fidelity.py --seeds 0 1 --out runs/fidelity
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("unet", "unet_continued", "iac_residual", "iac_replace", "iac_replace_2x")


def config(args, seed: int):
    from iac_tf.config.experiment import load_experiment

    sets = {
        "name": f"seed{seed}", "output_dir": str(args.out), "seed": seed,
        "data.cache_dir": str(args.out / "cache"), "data.patch_size": args.patch_size,
        "unet.options": {"base_filters": args.base_filters},
        "stage1.epochs": args.stage1_epochs, "stage1.batch_size": args.batch_size,
        "stage1.verbose": 0,
        "stage2.epochs": args.stage2_epochs, "stage2.warmup_epochs": args.stage2_warmup,
        "stage2.batch_size": args.batch_size, "stage2.cell_channels": args.cell_channels,
        "stage2.verbose": 0, "stage2.draw_genotypes": False,
        "stage3.genotype": None if args.search else str(args.genotype),
        "stage3.epochs": args.stage3_epochs, "stage3.batch_size": args.batch_size,
        "stage3.cell_channels": None, "stage3.verbose": 0, "stage3.export_savedmodel": False,
        "stage3.monitor": "val_case_dice", "stage3.evaluate_initial": True,
        "stage3.implant_mode": "residual", "stage3.extra_implant_modes": ["replace"],
        "evaluation.unet_continued": True, "evaluation.split": "val_dt",
        "data.test_fraction": args.test_fraction,
        "stage3.fuse_output_conv": args.fuse == "on", "stage3.fuse_upsampling": args.fuse == "on",
    }
    return load_experiment(ROOT / "experiments" / "sample.yaml", sets)


def replace_2x(cfg):
    """Stage III in the paper's ``replace`` mode for twice the epochs, into compare/iac_replace_2x
    (one more training unit of the run, registered as ``iac_replace_2x``)."""
    import dataclasses

    from iac_tf import pipeline
    from iac_tf.pipeline.units import iac_unit
    from iac_tf.run_layout import RunLayout

    doubled = dataclasses.replace(cfg, stage3=dataclasses.replace(
        cfg.stage3, epochs=2 * cfg.stage3.epochs, implant_mode="replace", extra_implant_modes=()))
    unit = iac_unit(doubled, "iac_replace_2x", pipeline.stage3_genotype_path(cfg),
                    RunLayout.of(cfg).compare("iac_replace_2x"), "replace")
    with RunLayout.of(cfg).lock():
        return pipeline.train_unit(cfg, pipeline.prepare(cfg), unit)


def evaluate(cfg, split: str = "val_dt") -> dict:
    """Per-case Dice of the five models on ``split``: the cached slices of val_dt, or the whole
    volumes of test_dt (the predict path); returns {model: {case: mean Dice over classes}}."""
    import numpy as np

    from iac_tf import pipeline
    from iac_tf.evaluation.metrics import case_dice
    from iac_tf.evaluation.report import predict
    from iac_tf.run_layout import model_paths
    from iac_tf.models import load_unet

    from iac_tf.inference.run_scores import score_volumes

    prepared = pipeline.prepare(cfg)
    paths = model_paths(cfg.run_dir)
    names = {"unet": "unet", "unet_continued": "unet_continued", "iac_residual": "iac",
             "iac_replace": "iac_replace", "iac_replace_2x": "iac_replace_2x"}
    if split == "test_dt":
        scores = score_volumes(cfg, {label: load_unet(paths[registered])
                                     for label, registered in names.items()},
                               "test_dt", case_ids=prepared.test_cases)
        return {label: {case: float(np.nanmean([r[f"{label}_dice"] for r in scores.rows
                                                 if r["case"] == case]))
                        for case in scores.cases} for label in names}
    images, masks, case_ids = prepared.arrays("val_dt")
    rule = pipeline.common.label_rule(cfg, prepared)  # the run's decision rule, as its tables
    out = {}
    for label, registered in names.items():
        scores = case_dice(masks, predict(load_unet(paths[registered]), images), case_ids, rule)
        out[label] = {case: float(np.nanmean(d)) for case, d in scores.items()}
    return out


def best_epochs(cfg) -> dict:
    """Selected epoch of each trained model (0 = the model before any update)."""
    from iac_tf.run_layout import RunLayout

    layout = RunLayout.of(cfg)
    dirs = {"unet": layout.stage(1), "unet_continued": layout.compare("unet_continued"),
            "iac_residual": layout.stage(3), "iac_replace": layout.compare("iac_replace"),
            "iac_replace_2x": layout.compare("iac_replace_2x")}
    return {k: json.loads((d / "summary.json").read_text())["best_epoch"] for k, d in dirs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "fidelity")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stage1-epochs", type=int, default=20)
    parser.add_argument("--stage2-epochs", type=int, default=4)
    parser.add_argument("--stage2-warmup", type=int, default=1)
    parser.add_argument("--cell-channels", type=int, default=8)
    parser.add_argument("--stage3-epochs", type=int, default=10)
    parser.add_argument("--genotype", type=pathlib.Path,
                        default=ROOT / "benchmarks" / "fidelity_genotype.json")
    parser.add_argument("--search", action="store_true", help="run Stage II per seed")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="patients held out as test_dt (data.test_fraction)")
    parser.add_argument("--fuse", choices=["on", "off"], default="on",
                        help="stage3.fuse_output_conv and fuse_upsampling (the replace cells absorb "
                             "the U-Net layers around them; the same function)")
    args = parser.parse_args(argv)

    import os

    os.chdir(ROOT)  # the sample config's data root is relative to the repository root
    from iac_tf import pipeline
    from iac_tf.console import log_to_console

    log_to_console()  # the pipeline's [iac] lines
    from iac_tf.machine import header

    print(header(), flush=True)

    print(f"budget: base U-Net base_filters={args.base_filters}, {args.patch_size}x{args.patch_size} "
          f"patches, batch {args.batch_size}; Stage I {args.stage1_epochs} epochs, "
          + (f"Stage II {args.stage2_epochs} ({args.stage2_warmup} warm-up, C={args.cell_channels}), "
             if args.search else f"genotype {args.genotype.name} (C={args.cell_channels}), ")
          + f"Stage III "
          f"{args.stage3_epochs} epochs (replace_2x: {2 * args.stage3_epochs}); selection by "
          "per-case hard Dice on val_dt, epoch 0 included (Stage III, unet_continued); "
          f"Stage III cells absorbing the U-Net layers around them: {args.fuse}", flush=True)
    table, epochs, tests = {}, {}, {}
    for seed in args.seeds:
        cfg = config(args, seed)
        t0 = time.perf_counter()
        pipeline.run_stage1(cfg)
        if args.search:
            pipeline.run_stage2(cfg)
        pipeline.run_stage3(cfg)  # residual (iac), replace (iac_replace), unet_continued
        replace_2x(cfg)
        table[seed] = evaluate(cfg)
        tests[seed] = evaluate(cfg, "test_dt")
        epochs[seed] = best_epochs(cfg)
        print(f"[fidelity] seed {seed} done in {time.perf_counter() - t0:.0f} s", flush=True)

    lines = ["| seed | case | " + " | ".join(MODELS) + " |", "|---" * (len(MODELS) + 2) + "|"]
    for seed, scores in table.items():
        for case in scores["unet"]:
            lines.append(f"| {seed} | {case} | "
                         + " | ".join(f"{scores[m][case]:.4f}" for m in MODELS) + " |")
        lines.append(f"| {seed} | best epoch | "
                     + " | ".join(str(epochs[seed][m]) for m in MODELS) + " |")
    lines += ["", "| seed | test_dt case | " + " | ".join(MODELS) + " |",
              "|---" * (len(MODELS) + 2) + "|"]
    for seed, scores in tests.items():
        for case in scores["unet"]:
            lines.append(f"| {seed} | {case} | "
                         + " | ".join(f"{scores[m][case]:.4f}" for m in MODELS) + " |")
    text = "\n".join(lines)
    print("\nPer-case Dice on val_dt (slices; it selected the epochs), then on the test_dt volumes "
          "(mean over the classes present):\n" + text, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fidelity.md").write_text(text + "\n")
    (args.out / "fidelity.json").write_text(json.dumps(
        {"scores": table, "test_dt": tests, "best_epochs": epochs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
