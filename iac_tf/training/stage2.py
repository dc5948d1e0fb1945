"""Stage II (paper Section IV-B.2, Algorithm 1): search the IAC architecture on a frozen,
trained U-Net.

Output, under the stage folder:

* ``genotypes/epoch_XXX.json`` - the genotype derived after every epoch (all kept; the paper
  picks among epochs 25, 50, 100, 150, 200), plus ``genotypes/epoch_XXX.png`` drawings;
* ``arch/epoch_XXX.json`` - alpha, beta, softmax(alpha) and Psi per node after every epoch;
* ``history.csv`` - losses and slice-level soft Dice on both search sets, learning rates, lambda_e, warm-up flag
  and wall time per epoch; ``search_time.json`` - total/per-epoch search time (Table III);
* ``checkpoints/`` - everything needed to resume (omega, alpha, beta, both optimiser states).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time

import logging

import numpy as np

from iac_tf._keras import keras, tf
from iac_tf.files import atomic_write_json, atomic_write_text, make_dirs
from iac_tf.config.stages import Stage2Config
from iac_tf.genotype import Genotype, derive_genotype
from iac_tf.genotype.stability import stable
from iac_tf.implant import find_skip_connections, implant, module_name, residual
from iac_tf.implant.search_module import SearchModule
from iac_tf.run_layout import ARCH, EPOCH_GLOB, GENOTYPES, SEARCH_TIME, epoch_name
from iac_tf.search import (ArchitectureParameters, SearchCell, node_edge_slices, num_edges,
                           psi_per_node)
from iac_tf.search.topology import steps_for_num_edges
from iac_tf.training.loop import EpochLoop
from iac_tf.training.optimizers import make_optimizer
from iac_tf.training.supernet import SearchSupernet

log = logging.getLogger(__name__)


def build_supernet(unet: keras.Model, cfg: Stage2Config, output: str = "sigmoid"
                   ) -> SearchSupernet:
    """Implant a continuous IAC (:class:`~iac_tf.search.SearchCell`) into every skip connection
    of the frozen ``unet``; one :class:`~iac_tf.search.ArchitectureParameters` feeds all cells.
    ``output``: the U-Net's output function (``sigmoid`` or ``softmax``), which picks the loss
    (:func:`iac_tf.losses.loss_and_dice`)."""
    arch = ArchitectureParameters(num_edges=num_edges(cfg.cell_steps), init=cfg.arch_init,
                                  name="iac_arch")

    def make_module(level, up_shape, skip_shape):
        return SearchModule(arch, SearchCell(
            out_channels=int(up_shape[-1]) + int(skip_shape[-1]),
            C=cfg.cell_channels,
            K=cfg.partial_channels,
            edge_norm=cfg.edge_norm,
            implementation=cfg.cell_implementation,
            steps=cfg.cell_steps,
            name=module_name("iac_search_cell", level),
        ), fuse_upsampling=cfg.fuse_upsampling, fuse_output_conv=cfg.fuse_output_conv)

    if cfg.implant_mode == "residual":
        make_module = residual(make_module, find_skip_connections(unet), "output_conv")
    net = implant(unet, make_module, name=f"{unet.name}_iac_search")
    supernet = SearchSupernet(
        net, arch, update_order=cfg.update_order, arch_weight_decay=cfg.arch_weight_decay,
        weight_decay=cfg.weight_decay, output=output, name="search_supernet",
    )
    arch_opt = keras.optimizers.Adam(cfg.arch_learning_rate, beta_1=cfg.arch_beta_1, beta_2=cfg.arch_beta_2)
    weight_opt = make_optimizer("sgd", cfg.weight_lr(1), momentum=cfg.weight_momentum)
    if cfg.mixed_precision:
        arch_opt = keras.mixed_precision.LossScaleOptimizer(arch_opt)
        weight_opt = keras.mixed_precision.LossScaleOptimizer(weight_opt)
    supernet.compile(arch_optimizer=arch_opt, weight_optimizer=weight_opt)
    # Create optimiser slots now so checkpoints restore them eagerly (not deferred).
    _inner(arch_opt).build(supernet.arch_variables)
    _inner(weight_opt).build(supernet.omega_variables)
    return supernet


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


def _set_lr(optimizer, value: float) -> None:
    _inner(optimizer).learning_rate.assign(value)


def arch_state(supernet: SearchSupernet, edge_norm: str) -> dict:
    """alpha, beta, softmax(alpha) (eq. 1) and Psi per node (eq. 4 or 6-10) as plain lists."""
    alpha = supernet.arch.alpha.numpy()
    beta = supernet.arch.beta.numpy()
    steps = steps_for_num_edges(beta.shape[0])
    phi = tf.nn.softmax(alpha, axis=-1).numpy()
    psi_all = psi_per_node(beta, edge_norm, steps).numpy()
    psi = [psi_all[start:end].tolist() for start, end in node_edge_slices(steps)]
    return {"alpha": alpha.tolist(), "beta": beta.tolist(), "phi": phi.tolist(), "psi": psi}


@dataclasses.dataclass
class SearchResult:
    run_dir: pathlib.Path
    genotype_paths: list[pathlib.Path]
    history: list[dict]
    seconds: float


def search(
    unet: keras.Model,
    train_search,
    val_search,
    cfg: Stage2Config,
    run_dir: str | os.PathLike,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    output: str = "sigmoid",
) -> SearchResult:
    """Run Algorithm 1 on ``unet`` (frozen) and write the search outputs to ``run_dir``.

    Args:
        unet: the trained U-Net (its weights are never changed).
        train_search / val_search: callables ``(epoch, seed) -> batched tf.data.Dataset`` of
            ``(images, masks)`` for ``train_search_dt`` and ``val_search_dt``; epoch is 0-based,
            seed is the epoch's shuffle seed (``None`` when ``cfg.shuffle`` is off).
            Both should give the same number of batches (Z in Algorithm 1); pairs beyond the
            shorter one are dropped.
        cfg: the search configuration.
        run_dir: stage folder; an interrupted search there is resumed.
        seed: run seed (data order).
        strategy: a ``tf.distribute`` strategy (e.g. ``MirroredStrategy`` for several GPUs); the
            supernet and optimisers are built in its scope, ``unet`` should be loaded there too.
            Batches are global (split over the replicas).
        output: the U-Net's output function: ``sigmoid`` (the Dice loss of eq. (5)) or
            ``softmax`` over background + classes (Dice of the classes + cross-entropy).
    """
    run_dir = pathlib.Path(run_dir)
    make_dirs(run_dir / GENOTYPES)
    make_dirs(run_dir / ARCH)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        supernet = build_supernet(unet, cfg, output)
    loop = EpochLoop(
        run_dir,
        {"supernet": supernet, "arch_optimizer": supernet.arch_optimizer,
         "weight_optimizer": supernet.weight_optimizer},
        monitor=None,
        max_to_keep=cfg.checkpoints_to_keep,
        seed=seed,
        shuffle=cfg.shuffle,
    )

    def on_epoch_begin(epoch: int):
        # Per-epoch state of Algorithm 1, a pure function of the (1-based) epoch.
        active = epoch > cfg.warmup_epochs
        if active != supernet.search_active:
            supernet.search_active = active
            supernet.train_function = None  # retrace: the warm-up step has no architecture update
        _set_lr(supernet.weight_optimizer, cfg.weight_lr(epoch))
        supernet.reg_lambda.assign(cfg.reg_lambda(epoch))
        # Warm-up: no architecture step runs, so nothing is measured on val_search.
        return () if active else ("loss_val_search", "soft_dice_val_search", "arch_reg")

    def train_data(epoch: int, s):
        val_seed = None if s is None else s + 1
        return tf.data.Dataset.zip((train_search(epoch, s), val_search(epoch, val_seed)))

    genotype_paths: list[pathlib.Path] = []

    def on_epoch_end(epoch: int, logs: dict) -> dict:
        state = arch_state(supernet, cfg.edge_norm)
        genotype = derive_genotype(np.asarray(state["alpha"]), np.asarray(state["beta"]),
                                   edge_norm=cfg.edge_norm)
        path = run_dir / GENOTYPES / f"{epoch_name(epoch)}.json"
        atomic_write_text(path, genotype.to_json() + "\n")
        if cfg.draw_genotypes:
            try:
                genotype.draw(run_dir / GENOTYPES / f"{epoch_name(epoch)}.png")
            except Exception as exc:  # noqa: BLE001 - a drawing failure must not stop a search
                log.warning("genotype drawing failed at epoch %d: %s", epoch, exc)
        genotype_paths.append(path)
        atomic_write_json(run_dir / ARCH / f"{epoch_name(epoch)}.json", {"epoch": epoch, **state})
        if cfg.verbose:
            log.info("epoch %d/%d genotype: %s", epoch, cfg.epochs, genotype)
        return {
            "warmup": int(epoch <= cfg.warmup_epochs),
            "lr_weights": cfg.weight_lr(epoch),
            "lr_arch": cfg.arch_learning_rate,
            "reg_lambda": cfg.reg_lambda(epoch),
        }

    def decided(done: int) -> bool:
        """``stage2.stop_when_stable``: the genotypes written so far have not changed for that
        many epochs after the warm-up."""
        if cfg.stop_when_stable is None:
            return False
        genotypes = [Genotype.from_json(run_dir / GENOTYPES / f"{epoch_name(e)}.json")
                     for e in range(1, done + 1)]
        return stable(genotypes, cfg.warmup_epochs, cfg.stop_when_stable)

    t0 = time.perf_counter()
    history = loop.run(supernet, cfg.epochs, train_data=train_data, on_epoch_begin=on_epoch_begin,
                       on_epoch_end=on_epoch_end, verbose=cfg.verbose, stop=decided)
    seconds = time.perf_counter() - t0
    times = [float(r["epoch_time_s"]) for r in history]
    mean = sum(times) / max(1, len(times))
    record = {
        "epochs": len(times),
        "total_seconds": sum(times),
        "mean_epoch_seconds": mean,
        "per_epoch_seconds": times,
        "planned_epochs": cfg.epochs,
        "stopped_early": bool(loop.stopped_early),
    }
    if loop.stopped_early:
        saved = cfg.epochs - len(times)
        record.update({"stop_when_stable": cfg.stop_when_stable, "epochs_saved": saved,
                       # the search epochs left, at the mean epoch time of this search
                       "seconds_saved_estimate": saved * mean})
        log.info("the genotype has not changed for %d epochs after the warm-up: the search "
                 "stopped at epoch %d of %d (stage2.stop_when_stable), about %.0f s saved",
                 cfg.stop_when_stable, len(times), cfg.epochs, saved * mean)
    atomic_write_json(run_dir / SEARCH_TIME, record)
    all_paths = sorted((run_dir / GENOTYPES).glob(f"{EPOCH_GLOB}.json"))
    return SearchResult(run_dir=run_dir, genotype_paths=all_paths, history=history, seconds=seconds)

