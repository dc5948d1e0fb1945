"""DiscreteCell: node sums of the chosen ops against NumPy, zoo shapes, parameter counts."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.genotype import DiscreteCell, Genotype
from tests.search.zoo_shapes import ZOO_LEVELS

GENOTYPE = Genotype((
    (("sep_conv_3x3", 1), ("skip_connect", 0)),
    (("dil_conv_3x3", 2), ("max_pool_3x3", 1)),
    (("avg_pool_3x3", 0), ("sep_conv_5x5", 3)),
    (("dil_conv_5x5", 4), ("skip_connect", 2)),
))


def test_node_sums_match_reference():
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(2, 6, 6, 12)).astype(np.float32)
    x1 = rng.normal(size=(2, 6, 6, 20)).astype(np.float32)
    cell = DiscreteCell(GENOTYPE, 32, C=8)
    got = cell([x0, x1], training=False).numpy()
    states = [cell.preprocess0(x0, training=False).numpy(), cell.preprocess1(x1, training=False).numpy()]
    for j, node in enumerate(GENOTYPE.edges):
        (op_a, i_a), (op_b, i_b) = node
        layer_a, layer_b = cell.node_ops[2 * j : 2 * j + 2]
        assert op_a in layer_a.name and op_b in layer_b.name
        states.append(
            layer_a(states[i_a], training=False).numpy() + layer_b(states[i_b], training=False).numpy()
        )
    want = np.concatenate(states[2:], -1) @ cell.output_conv.kernel.numpy()[0, 0] + cell.output_conv.bias.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # affine BNs in the discrete cell
    assert any("gamma" in w.name for w in cell.trainable_weights)


def test_parameter_count():
    C, cu, cs, out = 16, 64, 64, 128
    cell = DiscreteCell(GENOTYPE, out, C=C)
    cell.build([(None, 8, 8, cu), (None, 8, 8, cs)])
    bn = 4 * C  # gamma, beta, moving mean, moving variance
    pre = (cu * C + bn) + (cs * C + bn)
    ops = {
        "sep_conv_3x3": 2 * (9 * C + C * C + bn), "sep_conv_5x5": 2 * (25 * C + C * C + bn),
        "dil_conv_3x3": 9 * C + C * C + bn, "dil_conv_5x5": 25 * C + C * C + bn,
    }
    chosen = sum(ops.get(op, 0) for node in GENOTYPE.edges for op, _ in node)
    assert cell.count_params() == pre + chosen + (4 * C * out + out)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("H,cu,cs,level", ZOO_LEVELS)
def test_zoo_shapes_forward_backward(H, cu, cs, level, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        cell = DiscreteCell(GENOTYPE.to_dict(), cu + cs)
        batch = 1 if H == 128 else 2
        x0, x1 = tf.random.normal((batch, H, H, cu)), tf.random.normal((batch, H, H, cs))
        with tf.GradientTape() as tape:
            y = cell([x0, x1], training=True)
            loss = tf.reduce_mean(tf.cast(y, tf.float32) ** 2)
        grads = tape.gradient(loss, cell.trainable_weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.shape == (batch, H, H, cu + cs)
    assert y.dtype == (tf.float16 if policy == "mixed_float16" else tf.float32)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_genotype_forms_and_config():
    cell = DiscreteCell(GENOTYPE.to_json(), 24, C=8, name="iac0")
    assert cell.genotype == GENOTYPE
    config = cell.get_config()
    assert config["genotype"]["edges"][0] == [["sep_conv_3x3", 1], ["skip_connect", 0]]
    clone = DiscreteCell.from_config(config)
    assert clone.genotype == GENOTYPE and (clone.out_channels, clone.C) == (24, 8)
    with pytest.raises(TypeError, match="expected a Genotype"):
        DiscreteCell(42, 8)
    with pytest.raises(ValueError, match="expects"):
        DiscreteCell(GENOTYPE, 8)(tf.ones((1, 4, 4, 4)))


# ------------------------------------------------------------------ absorbed layers around the cell
# Reference: the plain cell (same weights) applied to the upsampled input0, then the Conv2D the
# absorbing cell took in; and, in inference, the cell's own Keras sublayers called one by one.
LOW, HIGH, CU, CS, OUT, CELL_C = 4, 8, 6, 10, 16, 4


def _decoder_conv(name="decoder_conv", filters=5):
    conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)
    conv.build((None, HIGH, HIGH, OUT))
    conv.trainable = False
    return conv


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x0 = tf.constant(rng.normal(size=(2, LOW, LOW, CU)), tf.float32)
    x1 = tf.constant(rng.normal(size=(2, HIGH, HIGH, CS)), tf.float32)
    return x0, x1


def _randomise_cell(cell, seed=0):
    """Random BN gamma/beta/statistics (positive variance) and output bias."""
    rng = np.random.default_rng(seed)
    for v in cell.weights:
        name = v.name.split("/")[-1]
        if name.startswith("gamma"):
            v.assign(rng.uniform(0.7, 1.3, v.shape))
        elif name.startswith("beta") or (name.startswith("bias") and "output_conv" in v.name):
            v.assign(rng.normal(0.0, 0.2, v.shape))
        elif name.startswith("moving_mean"):
            v.assign(rng.normal(0.0, 0.3, v.shape))
        elif name.startswith("moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape))


def _relative(cell, v):
    prefix = cell.name + "/"
    assert v.name.startswith(prefix), v.name
    return v.name[len(prefix):]


def _own_weights(cell):
    """The cell's weights but the absorbed layer's, by name relative to the cell."""
    absorbed = {w.ref() for w in cell.absorbed.weights} if cell.absorbed is not None else set()
    return {_relative(cell, v): v for v in cell.weights if v.ref() not in absorbed}


def _absorbing_and_plain():
    x0, x1 = _inputs()
    up = keras.layers.UpSampling2D((2, 2))(x0)
    conv = _decoder_conv()
    absorbing = DiscreteCell(GENOTYPE, OUT, C=CELL_C, input0_upsampling=(2, 2), absorbed=conv,
                             name="absorbing")
    plain = DiscreteCell(GENOTYPE, OUT, C=CELL_C, name="plain")
    absorbing([x0, x1], training=False)  # builds
    plain([up, x1], training=False)
    _randomise_cell(absorbing)
    own, other = _own_weights(absorbing), _own_weights(plain)
    assert sorted(own) == sorted(other) and len(own) == len(plain.weights)
    for name, v in own.items():
        other[name].assign(v)
    return absorbing, plain, conv, (x0, x1, up)


def test_absorbing_cell_equals_plain_cell_then_conv_in_inference():
    absorbing, plain, conv, (x0, x1, up) = _absorbing_and_plain()
    got = absorbing([x0, x1], training=False).numpy()
    want = conv(plain([up, x1], training=False)).numpy()
    assert got.shape == (2, HIGH, HIGH, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # None is inference too (Keras' BatchNorm default)
    np.testing.assert_allclose(absorbing([x0, x1]).numpy(), got, rtol=1e-6, atol=1e-6)


def test_absorbing_cell_equals_plain_cell_then_conv_in_training():
    absorbing, plain, conv, (x0, x1, up) = _absorbing_and_plain()
    # the absorbed layer stays frozen: the cell trains only its own variables
    assert not {v.ref() for v in conv.weights} & {v.ref() for v in absorbing.trainable_weights}
    assert len(absorbing.trainable_weights) == len(plain.trainable_weights)
    before = {name: v.numpy() for name, v in _own_weights(absorbing).items() if "moving" in name}
    weights = tf.constant(np.random.default_rng(3).normal(size=(2, HIGH, HIGH, 5)), tf.float32)
    results = []
    for run in (lambda: absorbing([x0, x1], training=True), lambda: conv(plain([up, x1], training=True))):
        cell = absorbing if not results else plain
        with tf.GradientTape() as tape:
            y = run()
            loss = tf.reduce_sum(y * weights)
        names = [_relative(cell, v) for v in cell.trainable_weights]
        grads = dict(zip(names, tape.gradient(loss, cell.trainable_weights)))
        results.append((y.numpy(), grads, {name: v.numpy() for name, v in _own_weights(cell).items()}))
    (y_a, g_a, w_a), (y_p, g_p, w_p) = results
    np.testing.assert_allclose(y_a, y_p, rtol=1e-4, atol=1e-4)
    assert sorted(g_a) == sorted(g_p)
    for name, g in g_a.items():
        assert g is not None, name
        np.testing.assert_allclose(g.numpy(), g_p[name].numpy(), rtol=1e-4,
                                   atol=1e-4 * max(1.0, float(np.abs(g_p[name].numpy()).max())), err_msg=name)
    assert len(before) == 16
    for name, value in before.items():  # the same BN moving-statistics updates
        assert not np.allclose(w_a[name], value), name
        np.testing.assert_allclose(w_a[name], w_p[name], rtol=1e-5, atol=1e-5, err_msg=name)


def _keras_layers_path(cell, x0, x1):
    """What the cell's Keras sublayers compute in inference, called one by one."""
    states = [cell.preprocess0(x0, training=False, upsampling=cell.input0_upsampling),
              cell.preprocess1(x1, training=False)]
    for j, node in enumerate(cell.genotype.edges):
        layers = cell.node_ops[2 * j : 2 * j + 2]
        states.append(tf.add_n([op(states[i], training=False) for op, (_, i) in zip(layers, node)]))
    out = cell.output_conv(tf.concat(states[2:], axis=-1))
    return (out if cell.absorbed is None else cell.absorbed(out)).numpy()


@pytest.mark.parametrize("absorbing", [False, True])
def test_inference_equals_the_keras_sublayers(absorbing):
    x0, x1 = _inputs(seed=4)
    if absorbing:
        cell = DiscreteCell(GENOTYPE, OUT, C=CELL_C, input0_upsampling=(2, 2), absorbed=_decoder_conv())
    else:
        cell = DiscreteCell(GENOTYPE, OUT, C=CELL_C)
        x0 = keras.layers.UpSampling2D((2, 2))(x0)
    cell([x0, x1], training=False)
    _randomise_cell(cell, seed=5)
    want = _keras_layers_path(cell, x0, x1)
    got = cell([x0, x1], training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the statistics matter (the comparison is not between two identity BNs)
    assert not np.allclose(cell([x0, x1], training=True).numpy(), want, atol=1e-3)


def test_config_round_trip_with_absorbed_and_upsampling():
    x0, x1 = _inputs()
    cell = DiscreteCell(GENOTYPE, OUT, C=CELL_C, input0_upsampling=(2, 2), absorbed=_decoder_conv(),
                        name="absorbing")
    want = cell([x0, x1], training=False)
    config = cell.get_config()
    assert config["input0_upsampling"] == [2, 2]
    assert config["absorbed"]["class_name"] == "Conv2D"
    assert config["absorbed"]["config"]["trainable"] is False
    clone = DiscreteCell.from_config(config)
    assert clone.input0_upsampling == (2, 2)
    assert type(clone.absorbed) is keras.layers.Conv2D and not clone.absorbed.trainable
    assert clone.absorbed.get_config() == cell.absorbed.get_config()
    clone([x0, x1], training=False)
    own = _own_weights(cell)
    for name, v in _own_weights(clone).items():
        v.assign(own[name])
    clone.absorbed.set_weights(cell.absorbed.get_weights())
    assert not clone.absorbed.trainable_weights
    np.testing.assert_allclose(clone([x0, x1], training=False).numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def _cell_model(cell):
    i0, i1 = keras.Input((LOW if cell.input0_upsampling else HIGH, ) * 2 + (CU,)), keras.Input((HIGH, HIGH, CS))
    return keras.Model([i0, i1], cell([i0, i1]))


def test_keras_save_and_load_of_an_absorbing_cell(tmp_path):
    x0, x1 = _inputs(seed=6)
    cell = DiscreteCell(GENOTYPE, OUT, C=CELL_C, input0_upsampling=(2, 2), absorbed=_decoder_conv(),
                        name="absorbing")
    model = _cell_model(cell)
    _randomise_cell(cell, seed=7)
    want = model([x0, x1], training=False).numpy()
    model.save(tmp_path / "cell.keras")
    loaded = keras.models.load_model(tmp_path / "cell.keras")
    got_cell = loaded.get_layer("absorbing")
    assert got_cell.input0_upsampling == (2, 2)
    assert type(got_cell.absorbed) is keras.layers.Conv2D and not got_cell.absorbed.trainable
    np.testing.assert_array_equal(got_cell.absorbed.kernel.numpy(), cell.absorbed.kernel.numpy())
    np.testing.assert_allclose(loaded([x0, x1], training=False).numpy(), want, rtol=1e-6, atol=1e-6)


def test_config_without_the_absorbing_keys_still_loads(tmp_path):
    """A cell config written before ``input0_upsampling`` / ``absorbed`` existed (the keys
    missing), as a dict and inside a ``.keras`` file."""
    import json
    import zipfile

    x0, x1 = _inputs(seed=8)
    x0 = keras.layers.UpSampling2D((2, 2))(x0)
    cell = DiscreteCell(GENOTYPE, OUT, C=CELL_C, name="old")
    model = _cell_model(cell)
    _randomise_cell(cell, seed=9)
    want = model([x0, x1], training=False).numpy()

    config = cell.get_config()
    del config["input0_upsampling"], config["absorbed"]
    clone = DiscreteCell.from_config(config)
    assert clone.absorbed is None and clone.input0_upsampling is None
    assert clone([x0, x1], training=False).shape == (2, HIGH, HIGH, OUT)

    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as src, zipfile.ZipFile(tmp_path / "old.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                model_config = json.loads(data)
                layers = [layer for layer in model_config["config"]["layers"]
                          if layer["class_name"].endswith("DiscreteCell")]
                assert len(layers) == 1
                for key in ("input0_upsampling", "absorbed"):
                    del layers[0]["config"][key]
                data = json.dumps(model_config).encode()
            dst.writestr(item, data)
    loaded = keras.models.load_model(tmp_path / "old.keras")
    assert loaded.get_layer("old").absorbed is None
    np.testing.assert_allclose(loaded([x0, x1], training=False).numpy(), want, rtol=1e-6, atol=1e-6)


def test_absorb_conv_refuses_other_layers():
    cell = DiscreteCell(GENOTYPE, OUT, C=CELL_C)
    for layer in (keras.layers.DepthwiseConv2D(3, padding="same"), keras.layers.Conv2DTranspose(5, 3),
                  keras.layers.SeparableConv2D(5, 3)):
        with pytest.raises(ValueError, match="cannot absorb"):
            cell.absorb_conv(layer)
        assert cell.absorbed is None
    with pytest.raises(ValueError, match="cannot absorb DepthwiseConv2D"):
        DiscreteCell(GENOTYPE, OUT, C=CELL_C, absorbed=keras.layers.DepthwiseConv2D(3))
