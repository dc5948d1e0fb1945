"""Stage III's training step does no gradient work for the frozen encoder.

No paper equation: the U-Net is frozen (Algorithm 3), so the only gradients needed are those of
the cells' weights, which reach down to the lowest cell through the decoder and never into the
encoder. The reference is the traced graph of the step: its gradient operations are counted by
the U-Net layer they belong to (``gradient_tape/<model>/<layer>/...``).
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.config.stages import Stage1Config, Stage3Config
from iac_tf.training.fit import compile_for_training
from iac_tf.training.stage3 import build_iac_unet
from iac_tf.unets import build_unet
from tests.training.test_stage3 import GENOTYPE


def _unet():
    keras.utils.set_random_seed(0)
    return build_unet("base", input_shape=(32, 32, 1), classes=2, base_filters=4)


def _batch():
    rng = np.random.default_rng(0)
    return (tf.constant(rng.normal(size=(2, 32, 32, 1)), tf.float32),
            tf.constant(rng.random((2, 32, 32, 2)) > 0.5, tf.float32))


def _step_graph(model, cfg):
    compile_for_training(model, cfg)
    return tf.function(model.train_step).get_concrete_function(_batch())


def _needed(concrete) -> set[str]:
    """The ops the step's results and updates need (what the runtime executes)."""
    needed, todo = set(), [t.op for t in concrete.outputs] + list(concrete.graph.control_outputs)
    while todo:
        op = todo.pop()
        if op.name not in needed:
            needed.add(op.name)
            todo.extend(t.op for t in op.inputs)
            todo.extend(op.control_inputs)
    return needed


def _gradient_ops(concrete, word: str) -> list[str]:
    return [op.name for op in concrete.graph.get_operations()
            if op.name.startswith("gradient_tape/") and f"/{word}" in op.name]


def test_stage1_step_has_encoder_gradients():
    """The count below can fail: Keras' own step on the U-Net differentiates the encoder."""
    assert len(_gradient_ops(_step_graph(_unet(), Stage1Config()), "encoder_")) > 20


@pytest.mark.parametrize("mode", ["replace", "residual"])
def test_stage3_step_traces_no_encoder_gradient(mode):
    model = build_iac_unet(_unet(), GENOTYPE, 4, implant_mode=mode)
    step = _step_graph(model, Stage3Config())
    assert _gradient_ops(step, "encoder_") == []
    # the cells' gradients are there, and the frozen decoder's input gradients lead to them
    assert _gradient_ops(step, "iac_cell_level0")
    needed = _needed(step)
    ran = [op for op in step.graph.get_operations() if op.name in needed]
    # no weight gradient of a frozen U-Net convolution runs (the tape traces them for the
    # decoder, whose inputs depend on the cells; nothing reads them, so they are pruned)
    frozen = [layer.name for layer in model.layers if "iac_cell" not in layer.name]
    frozen_filter_grads = [op.name for op in ran if op.type == "Conv2DBackpropFilter"
                           and any(f"/{name}/" in op.name for name in frozen)]
    assert frozen_filter_grads == []
    traced = [op.name for op in step.graph.get_operations() if op.type == "Conv2DBackpropFilter"
              and any(f"/{name}/" in op.name for name in frozen)]
    assert traced  # the check above can fail: such ops are traced, and named this way
    assert any(op.type == "Conv2DBackpropInput" and "decoder_stage" in op.name for op in ran)


def test_stage3_step_updates_only_the_cells():
    unet = _unet()
    frozen = {v.name: v.numpy().copy() for v in unet.weights}
    model = build_iac_unet(unet, GENOTYPE, 4)
    compile_for_training(model, Stage3Config())
    cells = {v.ref(): v.numpy().copy() for v in model.trainable_variables}
    assert cells and all("iac_cell" in v.name for v in model.trainable_variables)
    model.train_step(_batch())
    for v in unet.weights:
        np.testing.assert_array_equal(v.numpy(), frozen[v.name], err_msg=v.name)
    assert any(not np.array_equal(v.numpy(), cells[v.ref()]) for v in model.trainable_variables)
