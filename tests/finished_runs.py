"""Run folders that the finished rule (:meth:`iac_tf.run_layout.RunLayout.part_done`) calls
finished, without training: the records each part leaves when it is done."""

import json
import pathlib

from iac_tf.run_layout import RunLayout


def finish_training(folder: pathlib.Path, epochs: int, export: bool = False) -> None:
    """``summary.json`` and ``history.csv`` of a training of ``epochs`` epochs (and its
    SavedModel folder with ``export``)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    RunLayout.summary(folder).write_text(json.dumps({"best_epoch": epochs,
                                                     "best_val_soft_dice": 0.5}))
    RunLayout.history(folder).write_text(
        "epoch,soft_dice,val_soft_dice\n" + "".join(f"{e},0.5,0.5\n" for e in range(1, epochs + 1)))
    if export:
        (folder / "savedmodel").mkdir(exist_ok=True)


def finish_search(layout: RunLayout, epochs: int) -> None:
    """Stage II's record of ``epochs`` search epochs and the genotype of the last one."""
    layout.genotypes.mkdir(parents=True, exist_ok=True)
    layout.search_time.write_text(json.dumps({"epochs": epochs}))
    layout.genotype(epochs).write_text("{}")


def finish_part(layout: RunLayout, part) -> None:
    if part.kind == "stage2":
        finish_search(layout, part.epochs)
    else:
        finish_training(part.folder, part.epochs, part.needs_export)


def finish_parts(run_dir: pathlib.Path, cfg: dict) -> RunLayout:
    """Every part a run of ``cfg`` trains, finished (no evaluation)."""
    layout = RunLayout(run_dir)
    for part in layout.parts(cfg):
        finish_part(layout, part)
    return layout
