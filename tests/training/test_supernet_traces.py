"""The search step is traced in the first search epoch only: no retrace afterwards."""

from iac_tf._keras import keras, tf
from iac_tf.training.stage2 import Stage2Config, build_supernet
from tests.tiny import disc_data, tiny_unet


def test_no_retrace_after_the_first_search_epoch():
    keras.utils.set_random_seed(0)
    x, y = disc_data(12, size=8, seed=1)
    sn = build_supernet(tiny_unet(size=8, f=4, levels=1),
                        Stage2Config(cell_channels=4, partial_channels=2, batch_size=4))
    sn.search_active = True

    def epoch():  # 6 pairs per search set in batches of 4: the last batch is smaller
        data = tf.data.Dataset.zip((
            tf.data.Dataset.from_tensor_slices((x[:6], y[:6])).batch(4),
            tf.data.Dataset.from_tensor_slices((x[6:], y[6:])).batch(4),
        ))
        sn.fit(data, epochs=1, verbose=0)  # one fit per epoch, as the EpochLoop runs it
        return sn.train_step_traces

    first = epoch()
    assert first >= 1
    assert epoch() == first and epoch() == first
