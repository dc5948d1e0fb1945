"""The ``stage1:``, ``stage2:`` and ``stage3:`` sections of an experiment YAML (no TensorFlow:
loading a config never imports it). Each default is marked "paper (Section)" or "our choice"."""

from __future__ import annotations

import dataclasses
from typing import Literal

from iac_tf.config.schedules import cosine_power_annealing, linear_ramp

MONITOR = "val_soft_dice"  # slice-level soft Dice on val_dt: selects the best epoch


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How :func:`iac_tf.training.fit.train_model` trains a model: the keys every training
    section shares (``stage1:``, ``stage3:``; ``unet_continued`` and the comparison methods
    train with Stage III's, :meth:`training`).

    Args:
        epochs: training epochs (paper, IV-B.1: 200).
        batch_size: batch size (paper, IV-B.1: 128).
        learning_rate: constant learning rate (paper, IV-B.1: 1e-3).
        optimizer: ``adam`` (paper, IV-B.1) or ``sgd``.
        mixed_precision: build and train under ``mixed_float16`` (GPU; our choice: off).
        dice_eps: smoothing of the Dice loss/metric (our choice: 1; not in the paper).
        shuffle: reshuffle ``train_dt`` every epoch (deterministically from the seed; our choice).
        checkpoints_to_keep: epoch checkpoints kept for resuming (our choice).
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
        monitor: the score that selects the best epoch, always on ``val_dt``: ``val_soft_dice``
            (soft Dice over slices, the training metric; empty slices count; our reading of the
            paper's "Dice metric on val_dt", Section IV-B.1) or ``val_case_dice`` (the reported
            score: hard per-case Dice, mean over cases of the mean over present classes,
            ``iac_tf.evaluation.metrics.case_dice``; our choice).
        evaluate_initial: score the model before its first update as epoch 0 and let it be
            selected (our choice; default off for Stage I, on for Stage III).
        patience: stop after this many epochs without a better ``monitor`` (within
            ``epochs``); ``null``: train all ``epochs`` (paper). Our choice.
        distribute: ``mirrored`` trains under ``tf.distribute.MirroredStrategy`` over all
            visible GPUs (``batch_size`` is then the global batch), as ``stage2.distribute``.
    """

    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    mixed_precision: bool = False
    dice_eps: float = 1.0
    shuffle: bool = True
    checkpoints_to_keep: int = 2
    verbose: int = 2
    monitor: Literal["val_soft_dice", "val_case_dice"] = "val_soft_dice"
    evaluate_initial: bool = False
    patience: int | None = None
    distribute: Literal["none", "mirrored"] = "none"

    def __post_init__(self):
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or null, got {self.patience}")
        for key in ("epochs", "batch_size", "checkpoints_to_keep"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose}")

    def training(self) -> TrainingSettings:
        """These settings without the keys of a stage (a ``stage3:`` section without its
        implant keys, its own ``evaluate_initial`` kept)."""
        return TrainingSettings(**{f.name: getattr(self, f.name)
                                   for f in dataclasses.fields(TrainingSettings)})


@dataclasses.dataclass(frozen=True)
class Stage1Config(TrainingSettings):
    """The ``stage1:`` section of an experiment YAML: the training settings of the U-Net
    (:class:`TrainingSettings`, defaults of the paper's Section IV-B.1)."""


@dataclasses.dataclass(frozen=True)
class Stage2Config:
    """The ``stage2:`` section of an experiment YAML. Each default is marked "paper (Section)" or
    "our choice / PC-DARTS" (values the paper does not state, taken from PC-DARTS' code).

    Args:
        epochs: search epochs E, warm-up included (paper, IV-B.2: 200).
        warmup_epochs: first epochs that update omega only (paper, IV-B.2: 15).
        batch_size: batch size of each search set (paper, IV-B.2: 128).
        cell_channels: C, the channels of the cell's nodes after its input 1x1 convolutions
            (PC-DARTS: 16; not in the paper).
        partial_channels: K of PC-DARTS; 1/K of the channels go through the mixed ops (K=1: DARTS)
            (PC-DARTS: 4; not in the paper).
        edge_norm: ``tan`` (paper, eq. 6-10) or ``softmax`` (PC-DARTS' eq. 4).
        arch_init: ``ones`` (paper, Algorithm 1) or ``normal`` (PC-DARTS' 1e-3 N(0,1)).
        arch_learning_rate / arch_beta_1 / arch_beta_2: Adam for alpha/beta (learning rate 1e-3:
            paper, IV-B.2; betas 0.5/0.999: PC-DARTS, not in the paper).
        arch_weight_decay: L2 on alpha/beta (PC-DARTS: 1e-3, not in the paper). With
            ``edge_norm: tan`` the beta of an edge whose weight is capped gets only this L2
            gradient, which Adam turns into a full-size step down (measured example in
            docs/decisions.md); ``0`` turns the L2 off.
        implant_mode: ``replace`` (paper) or ``residual`` (our choice): the search cell's
            output is added to the concatenation through its zero-initialised output 1x1
            convolution, so the supernet starts as the U-Net (alpha/beta get no gradient until
            that convolution has moved; the warm-up moves it). See ``iac_tf.implant.residual``.
        weight_learning_rate / weight_learning_rate_min: SGD for omega, annealed from max to min.
        weight_momentum / weight_decay: SGD momentum and L2 for omega (paper: 0 and 0).
        lr_schedule: ``cosine_power`` (sharpDARTS, paper) or ``constant``.
        cosine_power: the power p of the cosine power annealing.
        update_order: ``arch_first`` (Algorithm 1) or ``weights_first`` (eq. 13 then 14).
        regularizer: ``none`` or ``beta_darts`` (lambda_e * mean logsumexp(alpha)).
        reg_lambda_start / reg_lambda_end: lambda_e ramps linearly between them over the search
            epochs after the warm-up.
        mixed_precision: ``mixed_float16`` (alpha, beta, Psi stay float32).
        distribute: ``mirrored`` runs the search under ``tf.distribute.MirroredStrategy`` over all
            visible GPUs (``batch_size`` is then the global batch).
        shuffle: reshuffle both search sets every epoch, deterministically from the seed.
        draw_genotypes: also write a PNG drawing of every epoch's genotype.
        checkpoints_to_keep / verbose: as in Stage I.
        cell_implementation: ``fused`` (our choice, faster) or ``reference`` (edge by edge); the
            same function of the same weights (``SearchCell(implementation=...)``).
        fuse_output_conv: where a cell's output feeds a frozen ``Conv2D`` alone (``replace``
            mode), compute that convolution of the cell's output 1x1 convolution as one
            convolution with the composed kernel (`iac_tf.implant.ComposedConv`; our choice):
            the same function and gradients, fewer FLOPs where ``steps * C`` is below the
            concatenation's channels (checked per skip; elsewhere the two stay separate).
        fuse_upsampling: where a cell's ``up`` input is made by a nearest ``UpSampling2D`` that
            nothing else reads, the cell takes that layer's input and runs its preprocessing
            ReLU and 1x1 convolution at the low resolution (``SearchCell(input0_upsampling=)``;
            our choice): the same values, a quarter of the memory kept for that convolution's
            gradient and of its FLOPs.
        cell_steps: intermediate nodes of the searched cell (paper, Section III-A: 4, i.e. 14
            edges); smaller values give a smaller search space (tests use 2: 5 edges, a much
            cheaper supernet to build and trace).
        stop_when_stable: stop the search once the genotype derived after an epoch has been
            the same for this many consecutive epochs after the warm-up
            (:mod:`iac_tf.genotype.stability`); ``null`` (default): search all ``epochs``
            (paper). The stopping epoch and the time saved go to ``search_time.json``.
    """

    epochs: int = 200
    warmup_epochs: int = 15
    batch_size: int = 128
    cell_channels: int = 16
    partial_channels: int = 4
    edge_norm: Literal["tan", "softmax"] = "tan"
    arch_init: Literal["ones", "normal"] = "ones"
    arch_learning_rate: float = 1e-3
    arch_beta_1: float = 0.5
    arch_beta_2: float = 0.999
    arch_weight_decay: float = 1e-3
    implant_mode: Literal["replace", "residual"] = "replace"
    weight_learning_rate: float = 0.01
    weight_learning_rate_min: float = 0.0
    weight_momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: Literal["cosine_power", "constant"] = "cosine_power"
    cosine_power: float = 10.0
    update_order: Literal["arch_first", "weights_first"] = "arch_first"
    regularizer: Literal["none", "beta_darts"] = "none"
    reg_lambda_start: float = 0.0
    reg_lambda_end: float = 1.0
    mixed_precision: bool = False
    distribute: Literal["none", "mirrored"] = "none"
    shuffle: bool = True
    draw_genotypes: bool = True
    checkpoints_to_keep: int = 2
    verbose: int = 2
    cell_implementation: Literal["fused", "reference"] = "fused"
    fuse_output_conv: bool = True
    fuse_upsampling: bool = True
    cell_steps: int = 4
    stop_when_stable: int | None = None

    def __post_init__(self):
        for key in ("epochs", "batch_size", "cell_channels", "partial_channels", "checkpoints_to_keep",
                    "cell_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if self.arch_weight_decay < 0:
            raise ValueError(f"arch_weight_decay must be >= 0, got {self.arch_weight_decay}")
        if self.stop_when_stable is not None and self.stop_when_stable < 1:
            raise ValueError(f"stop_when_stable must be >= 1 or null, got {self.stop_when_stable}")
        if self.cosine_power < 1:
            raise ValueError(f"cosine_power must be >= 1, got {self.cosine_power}")

    def weight_lr(self, epoch: int) -> float:
        """Learning rate of omega in ``epoch`` (1-based)."""
        if self.lr_schedule == "constant":
            return self.weight_learning_rate
        return cosine_power_annealing(epoch, self.epochs, self.weight_learning_rate,
                                      self.weight_learning_rate_min, self.cosine_power)

    def reg_lambda(self, epoch: int) -> float:
        """lambda_e of Algorithm 1 (0 when the regulariser is off or during warm-up)."""
        if self.regularizer == "none" or epoch <= self.warmup_epochs:
            return 0.0
        return linear_ramp(epoch, self.epochs, self.reg_lambda_start, self.reg_lambda_end,
                           first_epoch=self.warmup_epochs + 1)


@dataclasses.dataclass(frozen=True)
class Stage3Config(TrainingSettings):
    """The ``stage3:`` section: every training key (``monitor``, ``patience``, ...; the
    paper trains Stage III "following the same hyper-parameters as in Stage I", Section IV-B.3),
    plus

    Args:
        evaluate_initial: score the implanted model before its first update as epoch 0 and let
            it be selected (our choice, default on: with ``residual`` the selected model is then
            never worse on ``val_dt`` than the U-Net by the ``monitor`` score).
        cell_channels: C of the discrete cell; ``null`` (default): the search's
            ``stage2.cell_channels`` (16, PC-DARTS' C; the paper does not give C).
        implant_mode: ``replace`` (paper, Section IV-B.3: the cell replaces the concatenation,
            weights initialised randomly) or ``residual`` (our choice:
            ``concat(up, skip) + W_out * cell(up, skip)`` with the cell's output convolution
            initialised to zero, so the implanted model starts as the U-Net).
        residual_projection: ``W_out`` of the residual mode: ``auto`` / ``output_conv`` (zero the
            cell's own output 1x1 convolution, no extra parameter) or ``conv`` (an extra
            zero-initialised 1x1 convolution). See ``iac_tf.implant.residual``.
        extra_implant_modes: also train the IAC in these other modes (each into
            ``compare/iac_<mode>/``, registered and evaluated as ``iac_<mode>``); e.g.
            ``[replace]`` next to ``implant_mode: residual`` reports both modes.
        genotype: path of a genotype JSON to use; if unset, Stage II's genotype of
            ``genotype_epoch`` (default: the last search epoch) is used.
        genotype_epoch: which Stage II epoch's genotype to implant.
        genotype_epochs: the genotype-epoch sweep (paper Table VI, Fig. 6: ``[25, 50, 100, 150,
            200]``): one Stage III per listed Stage II epoch, into ``stage3/epoch_XXX/``; ``null``
            (default): one Stage III into ``stage3/``.
        select_genotype: with a sweep, which epoch's IAC U-Net is the run's final ``iac``:
            ``best_val`` (default; the best Stage III val_dt soft Dice, paper Section V-A) or
            ``last`` (the last listed epoch).
        export_savedmodel: also export the best model as a TensorFlow SavedModel.
        fuse_output_conv / fuse_upsampling: as in Stage II, for the discrete cell in ``replace``
            mode (``DiscreteCell(absorbed=, input0_upsampling=)``; our choice, default on): the
            same function, computed with the frozen decoder convolution after the cell composed
            with its output 1x1 convolution and its preprocessing at the resolution before the
            upsampling. The saved model holds the cell with the absorbed layer.
    """

    evaluate_initial: bool = True
    cell_channels: int | None = None
    implant_mode: Literal["replace", "residual"] = "replace"
    residual_projection: Literal["auto", "output_conv", "conv"] = "auto"
    extra_implant_modes: tuple[str, ...] = ()
    genotype: str | None = None
    genotype_epoch: int | None = None
    genotype_epochs: tuple[int, ...] | None = None
    select_genotype: Literal["best_val", "last"] = "best_val"
    export_savedmodel: bool = True
    fuse_output_conv: bool = True
    fuse_upsampling: bool = True

    def __post_init__(self):
        super().__post_init__()
        for mode in self.extra_implant_modes:
            if mode not in ("replace", "residual") or mode == self.implant_mode:
                raise ValueError(f"extra_implant_modes: {mode!r} must be 'replace' or 'residual' "
                                 f"and differ from implant_mode ({self.implant_mode!r})")
        if self.cell_channels is not None and self.cell_channels < 1:
            raise ValueError(f"cell_channels must be >= 1, got {self.cell_channels}")
        if self.genotype_epoch is not None and self.genotype_epoch < 1:
            raise ValueError(f"genotype_epoch must be >= 1, got {self.genotype_epoch}")
        if self.genotype_epochs is not None:
            epochs = list(self.genotype_epochs)
            if not epochs or any(e < 1 for e in epochs) or len(set(epochs)) != len(epochs):
                raise ValueError(f"genotype_epochs must be distinct epochs >= 1, got {epochs}")
            if self.genotype is not None or self.genotype_epoch is not None:
                raise ValueError("genotype_epochs (a sweep) cannot be combined with genotype or "
                                 "genotype_epoch (one genotype); set only one of them")
