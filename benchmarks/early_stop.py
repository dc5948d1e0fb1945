"""What ``stage2.stop_when_stable`` would save on finished searches, and whether it changes the
genotype Stage III implants.

For each run folder given (a finished Stage II: ``stage2/genotypes/epoch_XXX.json`` and
``stage2/search_time.json`` with the per-epoch times), and each N of ``--patience``, it replays
the stopping rule (:func:`iac_tf.genotype.stability.stable`) over the genotypes the full search
wrote and prints: the epoch the search would have stopped at, the epochs and the hours saved
(measured epoch times of the epochs skipped), and whether the genotype at the stop equals the
full search's last genotype. Where it does, Stage III trains the same cell either way (the same
genotype, the same seeds), so the Dice of the early-stopped search is the full search's; where it
does not, ``--train`` runs Stage III on the early genotype into ``RUN_early_N/`` and prints the
per-case Dice of both (pass the run's config with ``--config``). Run from the repository root:

    python benchmarks/early_stop.py runs/sample_base --patience 1 2 3
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iac_tf.genotype import Genotype  # noqa: E402
from iac_tf.machine import header  # noqa: E402
from iac_tf.genotype.stability import stable  # noqa: E402
from iac_tf.run_layout import RunLayout, read_config  # noqa: E402


def replay(run_dir: pathlib.Path, patience: int) -> dict:
    """The stop ``stop_when_stable: patience`` would have made in the search of ``run_dir``."""
    layout = RunLayout(run_dir)
    files = layout.genotype_files()
    if not files or not layout.search_time.is_file():
        raise SystemExit(f"{run_dir}: no finished Stage II (genotypes and search_time.json)")
    times = json.loads(layout.search_time.read_text())["per_epoch_seconds"]
    warmup = int((read_config(layout.config).get("stage2") or {}).get("warmup_epochs", 15))
    genotypes = [Genotype.from_json(p) for p in files]
    stop = next((e for e in range(1, len(genotypes) + 1)
                 if stable(genotypes[:e], warmup, patience)), len(genotypes))
    return {"run": str(run_dir), "patience": patience, "warmup": warmup,
            "epochs": len(genotypes), "stop_epoch": stop, "epochs_saved": len(genotypes) - stop,
            "hours_saved": sum(times[stop:]) / 3600, "hours_full": sum(times) / 3600,
            "same_genotype": genotypes[stop - 1] == genotypes[-1],
            "genotype_at_stop": str(files[stop - 1])}


def train_early(row: dict, config: str) -> dict:
    """Stage III (and the evaluation) of the early-stopped genotype, in a new run folder."""
    from iac_tf.cli import main

    run = pathlib.Path(row["run"])
    name = f"{run.name}_early_{row['patience']}"
    unet = ((read_config(RunLayout(run).config).get("unet") or {}).get("pretrained")
            or run / "stage1" / "best_model.keras")  # the U-Net the run's search used
    rc = main(["stage3", config, "--set", f"name={name}", "--set", f"output_dir={run.parent}",
               "--set", f"stage3.genotype={row['genotype_at_stop']}",
               "--set", f"unet.pretrained={unet}"])
    if rc:
        raise SystemExit(f"Stage III of the early genotype failed ({rc})")
    return {"early": str(run.parent / name / "evaluation" / "stats.json"),
            "full": str(run / "evaluation" / "stats.json")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders with a finished Stage II")
    parser.add_argument("--patience", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--train", action="store_true",
                        help="train Stage III on an early genotype that differs from the full one")
    parser.add_argument("--config", help="the runs' experiment YAML (for --train)")
    args = parser.parse_args(argv)
    print(header(tensorflow=args.train), flush=True)
    print(f"{'run':<28}{'N':>3}{'stop':>6}{'of':>5}{'saved':>7}{'h saved':>10}{'h full':>9}"
          "  same genotype as the full search")
    for run in map(pathlib.Path, args.runs):
        for n in args.patience:
            row = replay(run, n)
            print(f"{run.name:<28}{n:>3}{row['stop_epoch']:>6}{row['epochs']:>5}"
                  f"{row['epochs_saved']:>7}{row['hours_saved']:>10.4f}{row['hours_full']:>9.4f}  "
                  f"{'yes: same Stage III, same Dice' if row['same_genotype'] else 'no'}")
            if args.train and not row["same_genotype"] and row["epochs_saved"]:
                if not args.config:
                    raise SystemExit("--train needs --config (the runs' experiment YAML)")
                print("  ", json.dumps(train_early(row, args.config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
