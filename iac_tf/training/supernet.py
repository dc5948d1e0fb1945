"""The Stage II supernet S (paper Fig. 1, Algorithm 1): a frozen, trained U-Net whose skip
connections run through continuous IACs, trained by alternating architecture and cell-weight
updates in a custom ``train_step`` used through ``model.fit``.

For every pair of batches (``train_search_dt`` batch, ``val_search_dt`` batch):

* architecture step, eq. (14) (Algorithm 1, lines 6-7): the Dice loss on the val_search batch
  (plus the optional beta-DARTS term and the L2 of alpha/beta) updates alpha and beta with Adam;
* weight step, eq. (13) (lines 8-9): the Dice loss on the train_search batch updates the cell
  weights omega with SGD.

The loss is the one the U-Net's output calls for (:func:`iac_tf.losses.loss_and_dice`): the
Dice loss of eq. (5) for sigmoids, Dice of the classes + cross-entropy for a softmax over
background + classes; ``soft_dice_*`` is the Dice of the class channels either way.

Algorithm 1 runs the architecture step first; ``update_order="weights_first"`` runs eq. (13)
before eq. (14) as the text around them reads. During the warm-up epochs only the weight step
runs. Parameter groups are told apart by identity: alpha/beta are the variables of the
:class:`~iac_tf.search.ArchitectureParameters` layer, omega every other trainable variable.

Mixed precision: the optimisers are wrapped in ``LossScaleOptimizer`` and the step calls
``optimizer.minimize(loss, var_list, tape=tape)``, which scales the loss inside the tape and
unscales the gradients (a plain ``apply_gradients`` on unscaled tape gradients underflows).
"""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.losses import loss_and_dice


class SearchSupernet(keras.Model):
    """Alternating bi-level search model.

    Args:
        net: the implanted functional model (frozen U-Net + ``SearchCell`` per skip).
        arch: the ``ArchitectureParameters`` layer that feeds every cell (owner of alpha, beta).
        update_order: ``"arch_first"`` (Algorithm 1) or ``"weights_first"`` (eq. 13 then 14).
        arch_weight_decay: L2 coefficient on alpha and beta (PC-DARTS: 1e-3), added as
            ``wd / 2 * (|alpha|^2 + |beta|^2)`` to the architecture loss (gradient ``wd * param``).
        weight_decay: L2 coefficient on omega (paper: 0).
        dice_eps: smoothing of the Dice loss.
        output: the U-Net's output function, ``sigmoid`` (Dice loss) or ``softmax`` (Dice of
            the classes + cross-entropy; ``net`` gives background + classes).

    Call arguments:
        inputs: image batch; returns the supernet's prediction (probabilities).
    """

    def __init__(self, net, arch, update_order="arch_first", arch_weight_decay=1e-3,
                 weight_decay=0.0, dice_eps=1.0, output="sigmoid", **kwargs):
        super().__init__(**kwargs)
        if update_order not in ("arch_first", "weights_first"):
            raise ValueError(f"update_order must be 'arch_first' or 'weights_first', got {update_order!r}")
        self.net = net
        self.arch = arch
        self.update_order = update_order
        self.arch_weight_decay = float(arch_weight_decay)
        self.weight_decay = float(weight_decay)
        self.dice_eps = float(dice_eps)
        if output not in ("sigmoid", "softmax"):
            raise ValueError(f"output must be 'sigmoid' or 'softmax', got {output!r}")
        self.output_kind = output
        # Python-level switch read at trace time; Stage II resets `train_function` when it flips.
        self.search_active = False
        # Python counter bumped each time train_step is traced (a Python side effect runs only
        # while tracing): tests assert that no epoch after the first search epoch retraces.
        self.train_step_traces = 0
        # lambda_e of the beta-DARTS regulariser (0 = off); assigned once per epoch.
        self.reg_lambda = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="reg_lambda")
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss_train_search", "soft_dice_train_search", "loss_val_search",
                         "soft_dice_val_search", "arch_reg")
        }

    # ---------------------------------------------------------------- variables
    @property
    def arch_variables(self) -> list:
        """alpha and beta (identity-owned by the ArchitectureParameters layer)."""
        return [self.arch.alpha, self.arch.beta]

    @property
    def omega_variables(self) -> list:
        """Every trainable variable of the supernet that is not alpha/beta: the cell weights."""
        arch_refs = {v.ref() for v in self.arch_variables}
        return [v for v in self.net.trainable_variables if v.ref() not in arch_refs]

    @property
    def metrics(self):
        return list(self._trackers.values())

    def call(self, inputs, training=None):
        return self.net(inputs, training=training)

    def compile(self, arch_optimizer, weight_optimizer, **kwargs):
        super().compile(**kwargs)
        self.arch_optimizer = arch_optimizer
        self.weight_optimizer = weight_optimizer

    # ---------------------------------------------------------------- steps
    @staticmethod
    def _replicas():
        """Replica count as float32: per-replica losses are divided by it so that the
        cross-replica gradient sum is the global-batch mean."""
        return tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)

    def _dice_loss(self, y, pred):
        """Loss of one replica's batch (the output's loss family), divided by the replica count
        so that the cross-replica gradient sum is the global-batch mean; with the per-sample
        losses and soft Dice."""
        per_sample, dice = loss_and_dice(y, pred, self.output_kind, self.dice_eps)
        return tf.reduce_mean(per_sample) / self._replicas(), per_sample, dice

    def _arch_step(self, x_val, y_val):
        """Eq. (14): (alpha, beta) <- (alpha, beta) - eta * d L_val / d(alpha, beta)."""
        arch_vars = self.arch_variables
        with tf.GradientTape() as tape:
            pred = self.net(x_val, training=True)
            loss, per_sample, dice = self._dice_loss(y_val, pred)
            l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in arch_vars])
            # beta-DARTS regulariser: lambda_e * mean_e logsumexp(alpha_e) (Algorithm 1's lambda_e).
            reg = self.reg_lambda * tf.reduce_mean(tf.reduce_logsumexp(self.arch.alpha, axis=-1))
            total = loss + (0.5 * self.arch_weight_decay * l2 + reg) / self._replicas()
        self.arch_optimizer.minimize(total, arch_vars, tape=tape)
        self._trackers["loss_val_search"].update_state(per_sample)
        self._trackers["soft_dice_val_search"].update_state(dice)
        self._trackers["arch_reg"].update_state(reg)

    def _weight_step(self, x_tr, y_tr):
        """Eq. (13): omega <- omega - eta_omega * d L_train / d omega."""
        omega = self.omega_variables
        with tf.GradientTape() as tape:
            pred = self.net(x_tr, training=True)
            loss, per_sample, dice = self._dice_loss(y_tr, pred)
            if self.weight_decay:
                l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in omega])
                loss = loss + 0.5 * self.weight_decay * l2 / self._replicas()
        self.weight_optimizer.minimize(loss, omega, tape=tape)
        self._trackers["loss_train_search"].update_state(per_sample)
        self._trackers["soft_dice_train_search"].update_state(dice)

    def train_step(self, data):
        self.train_step_traces += 1
        (x_tr, y_tr), (x_val, y_val) = data
        if self.search_active and self.update_order == "arch_first":
            self._arch_step(x_val, y_val)  # Algorithm 1, lines 6-7
        self._weight_step(x_tr, y_tr)      # Algorithm 1, lines 8-9
        if self.search_active and self.update_order == "weights_first":
            self._arch_step(x_val, y_val)
        return {name: t.result() for name, t in self._trackers.items()}

    def test_step(self, data):
        x, y = data
        pred = self.net(x, training=False)
        _, per_sample, dice = self._dice_loss(y, pred)
        self._trackers["loss_val_search"].update_state(per_sample)
        self._trackers["soft_dice_val_search"].update_state(dice)
        return {"loss": self._trackers["loss_val_search"].result(),
                "soft_dice": self._trackers["soft_dice_val_search"].result()}
