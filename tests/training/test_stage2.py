"""Stage II (Algorithm 1) on a tiny frozen U-Net: outputs, warm-up, frozen weights, which batch
updates which parameters, resume == uninterrupted, mixed precision.

Covers: iac_tf/training/precision.py
"""

import json
import math

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.training.precision import precision_policy
from iac_tf.training.stage2 import Stage2Config, build_supernet, search
from tests.tiny import batched, disc_data, tiny_unet

SIZE = 16


def _cfg(**kw):
    base = dict(epochs=2, warmup_epochs=1, batch_size=4, cell_channels=4, partial_channels=2,
                verbose=0, draw_genotypes=False, lr_schedule="constant")
    base.update(kw)
    return Stage2Config(**base)


def _data():
    x, y = disc_data(16, size=SIZE, seed=3)
    return (lambda e, s: batched(x[:8], y[:8]), lambda e, s: batched(x[8:], y[8:]))


class _Killed(RuntimeError):
    pass


def test_search_end_to_end_and_resume_equals_uninterrupted(tmp_path, capsys):
    train, val = _data()
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, levels=1)
    frozen_before = [w.copy() for w in unet.get_weights()]

    # Uninterrupted run.
    keras.utils.set_random_seed(7)
    capsys.readouterr()
    full = search(unet, train, val, _cfg(verbose=2), tmp_path / "full")
    # Console: the real epoch position, and the warm-up's unmeasured val_search values as n/a.
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "Epoch 1/1" not in out
    warmup = out.split("Epoch 2/2")[0]
    assert "n/a (not measured this epoch): loss_val_search, soft_dice_val_search, arch_reg" in warmup
    assert "loss_val_search:" not in warmup and "loss_train_search:" in warmup
    assert "loss_val_search:" in out.split("Epoch 2/2")[1]
    assert [p.name for p in full.genotype_paths] == ["epoch_001.json", "epoch_002.json"]
    # The frozen U-Net is bit-identical after the search (weights and BN statistics).
    assert all(np.array_equal(a, b) for a, b in zip(frozen_before, unet.get_weights()))
    # alpha/beta unchanged by the warm-up epoch (still the paper's ones), changed afterwards.
    arch = [json.loads((tmp_path / "full" / "arch" / f"epoch_{e:03d}.json").read_text()) for e in (1, 2)]
    assert np.array_equal(arch[0]["alpha"], np.ones((14, 8))) and np.array_equal(arch[0]["beta"], np.ones(14))
    assert not np.allclose(arch[1]["alpha"], arch[0]["alpha"])
    assert not np.allclose(arch[1]["beta"], arch[0]["beta"])
    rows = full.history
    assert [int(r["warmup"]) for r in rows] == [1, 0]
    assert all(math.isfinite(float(r["loss_train_search"])) for r in rows)
    assert math.isnan(float(rows[0]["loss_val_search"]))  # warm-up: no architecture step ran
    assert math.isfinite(float(rows[1]["loss_val_search"]))
    times = json.loads((tmp_path / "full" / "search_time.json").read_text())
    assert times["epochs"] == 2 and times["total_seconds"] > 0

    # Interrupted run: killed as epoch 2 starts, then resumed by a fresh call.
    calls = {"n": 0}

    def train_killed(e, s):
        calls["n"] += 1
        if e == 1 and calls["n"] == 2:
            raise _Killed()
        return train(e, s)

    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    with pytest.raises(_Killed):
        search(unet, train_killed, val, _cfg(), tmp_path / "resumed")
    assert len(list((tmp_path / "resumed" / "genotypes").glob("*.json"))) == 1
    keras.backend.clear_session()
    keras.utils.set_random_seed(123)  # a different seed for the new cells: the checkpoint wins
    resumed = search(unet, train_killed, val, _cfg(), tmp_path / "resumed")
    assert [int(r["epoch"]) for r in resumed.history] == [1, 2]
    final_full = json.loads((tmp_path / "full" / "arch" / "epoch_002.json").read_text())
    final_res = json.loads((tmp_path / "resumed" / "arch" / "epoch_002.json").read_text())
    np.testing.assert_allclose(final_res["alpha"], final_full["alpha"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(final_res["beta"], final_full["beta"], rtol=0, atol=1e-6)
    assert ((tmp_path / "full" / "genotypes" / "epoch_002.json").read_text()
            == (tmp_path / "resumed" / "genotypes" / "epoch_002.json").read_text())


def _snapshot(sn):
    variables = sn.variables + sn.arch_optimizer.variables + sn.weight_optimizer.variables
    return variables, [v.numpy().copy() for v in variables]


def _restore(snap):
    for v, value in zip(*snap):
        v.assign(value)


def _step(sn, snap, train_batch, val_batch):
    _restore(snap)
    sn.train_step((train_batch, val_batch))
    arch = [v.numpy().copy() for v in sn.arch_variables]
    omega = [v.numpy().copy() for v in sn.omega_variables]
    return arch, omega


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_train_step_uses_val_batch_for_arch_and_train_batch_for_omega():
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, levels=1)
    sn = build_supernet(unet, _cfg(lr_schedule="constant", weight_learning_rate=0.1))
    sn.search_active = True
    x, y = disc_data(8, size=SIZE, seed=5)
    a = (tf.constant(x[:2]), tf.constant(y[:2]))
    a2 = (tf.constant(x[2:4]), tf.constant(y[2:4]))
    b = (tf.constant(x[4:6]), tf.constant(y[4:6]))
    b2 = (tf.constant(x[6:8]), tf.constant(y[6:8]))
    sn(a[0])  # build
    snap = _snapshot(sn)
    init_arch = [v.numpy().copy() for v in sn.arch_variables]

    sn.update_order = "arch_first"  # Algorithm 1
    arch_ab, omega_ab = _step(sn, snap, a, b)
    arch_a2b, omega_a2b = _step(sn, snap, a2, b)
    arch_ab2, _ = _step(sn, snap, a, b2)
    assert not _same(arch_ab, init_arch)
    assert _same(arch_ab, arch_a2b), "the train_search batch must not touch alpha/beta"
    assert not _same(arch_ab, arch_ab2), "alpha/beta must follow the val_search batch"
    assert not _same(omega_ab, omega_a2b), "omega must follow the train_search batch"

    sn.update_order = "weights_first"  # eq. (13) then (14)
    _, omega_w_ab = _step(sn, snap, a, b)
    _, omega_w_ab2 = _step(sn, snap, a, b2)
    assert _same(omega_w_ab, omega_w_ab2), "the val_search batch must not touch omega"

    # omega's step is plain SGD on the train batch's Dice loss: check it against the tape.
    _restore(snap)
    with tf.GradientTape() as tape:
        loss, _, _ = sn._dice_loss(a[1], sn.net(a[0], training=True))
    grads = tape.gradient(loss, sn.omega_variables)
    expected = [w - 0.1 * g.numpy() if g is not None else w
                for w, g in zip([v.numpy() for v in sn.omega_variables], grads)]
    for got, want in zip(omega_w_ab, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_search_under_mixed_float16_has_no_nan(tmp_path):
    train, val = _data()
    keras.utils.set_random_seed(0)
    with precision_policy(True):
        unet = tiny_unet(size=SIZE, levels=1)
        result = search(unet, train, val, _cfg(epochs=1, warmup_epochs=0, mixed_precision=True), tmp_path)
    arch = json.loads((tmp_path / "arch" / "epoch_001.json").read_text())
    assert np.all(np.isfinite(arch["alpha"])) and np.all(np.isfinite(arch["psi"][3]))
    assert not np.allclose(arch["alpha"], 1.0), "alpha must move under loss scaling"
    assert all(math.isfinite(float(result.history[0][k])) for k in ("loss_train_search", "loss_val_search"))
    assert keras.mixed_precision.global_policy().name == "float32"


def test_loss_scaling_minimize_with_tape_keeps_tiny_gradients():
    """The measured trap: with mixed_float16, apply_gradients on unscaled float16 tape gradients
    of a tiny loss underflows to a zero update; minimize(loss, vars, tape=tape) does not."""
    with precision_policy(True):
        layer = keras.layers.Dense(4, kernel_initializer="zeros")  # an update of ~1e-9 stays visible
        layer.build((None, 4))
        x = tf.ones((2, 4))

        def tiny_loss():
            return tf.cast(tf.reduce_sum(layer(x)), tf.float32) * 1e-9

        opt = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(1.0))
        before = layer.kernel.numpy().copy()
        with tf.GradientTape() as tape:
            loss = tiny_loss()
        opt.minimize(loss, [layer.kernel], tape=tape)
        scaled_update = before - layer.kernel.numpy()

        naive = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(1.0))
        before = layer.kernel.numpy().copy()
        with tf.GradientTape() as tape:
            y = layer(x)  # float16 activations: the gradient flows through float16
            loss = tf.cast(tf.reduce_sum(y * tf.cast(1e-9, y.dtype)), tf.float32)
        grads = tape.gradient(loss, [layer.kernel])
        naive.apply_gradients(zip(grads, [layer.kernel]))
        naive_update = before - layer.kernel.numpy()
    assert np.all(scaled_update > 0)
    assert np.all(naive_update == 0)


def test_search_stops_when_its_genotype_is_stable_and_a_rerun_does_not_continue(tmp_path):
    """``stop_when_stable``: with a genotype unchanged after the warm-up (alpha and beta kept
    still by a negligible architecture learning rate), a 6-epoch search with a 1-epoch warm-up
    and ``stop_when_stable: 2`` stops after epoch 4 (epoch 2 is the first searched; epochs 3
    and 4 repeat its genotype), records the stop and the time saved, and a rerun does not
    search again."""
    from iac_tf.genotype import Genotype
    from iac_tf.run_layout import RunLayout

    train, val = _data()
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, levels=1)
    cfg = _cfg(epochs=6, warmup_epochs=1, stop_when_stable=2, arch_learning_rate=1e-12,
               arch_weight_decay=0.0)
    run_dir = tmp_path / "stage2"
    result = search(unet, train, val, cfg, run_dir)
    times = json.loads((run_dir / "search_time.json").read_text())
    # epoch 2 is the first searched epoch; epochs 3 and 4 repeat its genotype -> stop after 4
    assert times["epochs"] == 4 and times["stopped_early"] and times["planned_epochs"] == 6
    assert times["epochs_saved"] == 2 and times["seconds_saved_estimate"] > 0
    assert len(result.history) == 4 and len(result.genotype_paths) == 4
    genotypes = {Genotype.from_json(p) for p in result.genotype_paths[1:]}
    assert len(genotypes) == 1
    assert RunLayout(tmp_path).search_done(6)
    # the same search again resumes from its checkpoint and stops at once
    again = search(unet, train, val, cfg, run_dir)
    assert len(again.history) == 4
