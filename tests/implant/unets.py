"""Small hand-written U-Nets for the implantation tests (each exercises one graph feature)."""

from iac_tf._keras import keras, tf

L = keras.layers


def conv_block(x, filters, name):
    x = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.Activation("relu", name=f"{name}_relu")(x)


def plain_unet(input_shape=(32, 32, 3), filters=(4, 8, 16), classes=2):
    """Conv-BN-ReLU encoder, Conv2DTranspose decoder, concat [up, skip], Dropout at the bottom."""
    inputs = keras.Input(input_shape, name="image")
    x, skips = inputs, []
    for i, f in enumerate(filters[:-1]):
        x = conv_block(x, f, f"enc{i}")
        skips.append(x)
        x = L.MaxPooling2D(name=f"pool{i}")(x)
    x = conv_block(x, filters[-1], "bottleneck")
    x = L.Dropout(0.5, name="bottleneck_dropout")(x)
    for i, (f, skip) in enumerate(zip(reversed(filters[:-1]), reversed(skips))):
        x = L.Conv2DTranspose(f, 2, strides=2, name=f"dec{i}_up")(x)
        x = L.Concatenate(name=f"dec{i}_concat")([x, skip])
        x = conv_block(x, f, f"dec{i}")
    outputs = L.Conv2D(classes, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs, name="plain_unet")


def resize_unet(input_shape=(32, 32, 1)):
    """tf.image.resize upsampling followed by a conv (zhixuhao style), concat [skip, up]."""
    inputs = keras.Input(input_shape)
    e0 = conv_block(inputs, 4, "e0")
    e1 = conv_block(L.MaxPooling2D()(e0), 8, "e1")
    b = conv_block(L.MaxPooling2D()(e1), 8, "b")
    up1 = tf.image.resize(
        b, tf.shape(e1)[1:3] if input_shape[0] is None else (input_shape[0] // 2,) * 2
    )
    up1 = L.Conv2D(8, 2, padding="same", activation="relu")(up1)
    d1 = conv_block(L.Concatenate()([e1, up1]), 8, "d1")
    up0 = L.UpSampling2D(interpolation="bilinear")(d1)
    d0 = conv_block(L.Concatenate()([e0, up0]), 4, "d0")
    return keras.Model(inputs, L.Conv2D(1, 1, activation="sigmoid")(d0), name="resize_unet")


def nested_encoder_unet(input_shape=(32, 32, 3)):
    """The encoder is a nested keras.Model returning its three feature maps."""
    image = keras.Input(input_shape)
    f0 = conv_block(image, 4, "n0")
    f1 = conv_block(L.MaxPooling2D()(f0), 8, "n1")
    f2 = conv_block(L.MaxPooling2D()(f1), 16, "n2")
    encoder = keras.Model(image, [f0, f1, f2], name="encoder")
    inputs = keras.Input(input_shape)
    s0, s1, x = encoder(inputs)
    x = L.Concatenate(name="cat1")([L.UpSampling2D(name="up1")(x), s1])
    x = conv_block(x, 8, "m1")
    x = L.Concatenate(name="cat0")([L.UpSampling2D(name="up0")(x), s0])
    x = conv_block(x, 4, "m0")
    return keras.Model(inputs, L.Conv2D(2, 1, name="head")(x), name="nested_encoder_unet")


def wrapped_unet(input_shape=(32, 32, 3)):
    """A whole U-Net used as a layer of an outer model (preprocessing in front, twice-called)."""
    unet = plain_unet(input_shape)
    inputs = keras.Input(input_shape)
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    return keras.Model(inputs, [unet(x), unet(inputs)], name="wrapped_unet")


def shared_layers_unet(input_shape=(32, 32, 8)):
    """One Conv2D and one Concatenate are called at two levels; one output is also a skip."""
    inputs = keras.Input(input_shape)
    shared_conv = L.Conv2D(8, 3, padding="same", activation="relu", name="shared_conv")
    shared_concat = L.Concatenate(name="shared_concat")
    e0 = shared_conv(inputs)
    e1 = shared_conv(L.MaxPooling2D()(e0))
    b = L.Conv2D(8, 3, padding="same", name="bottom")(L.MaxPooling2D()(e1))
    d1 = L.Conv2D(8, 1, name="d1")(shared_concat([L.UpSampling2D()(b), e1]))
    d0 = shared_concat([L.UpSampling2D()(d1), e0])
    return keras.Model(inputs, [L.Conv2D(1, 1, name="head")(d0), e1], name="shared_layers_unet")


def no_skip_net(input_shape=(16, 16, 3)):
    """Two parallel branches concatenated, and a channel-wise concat of different sizes."""
    inputs = keras.Input(input_shape)
    a = L.Conv2D(4, 3, padding="same", name="branch_a")(inputs)
    b = L.Conv2D(4, 1, name="branch_b")(inputs)
    x = L.Concatenate(name="branches")([a, b])
    y = L.Concatenate(name="three_way")([a, b, x])
    return keras.Model(inputs, L.Conv2D(1, 1)(y), name="no_skip_net")


def tf_concat_unet(input_shape=(32, 32, 3)):
    """Skips joined with tf.concat (a TFOpLambda), [skip, up] then [up, skip]."""
    inputs = keras.Input(input_shape)
    e0 = conv_block(inputs, 4, "t0")
    e1 = conv_block(L.MaxPooling2D()(e0), 8, "t1")
    b = conv_block(L.MaxPooling2D()(e1), 8, "tb")
    d1 = conv_block(tf.concat([e1, L.UpSampling2D(name="tup1")(b)], axis=-1), 8, "td1")
    d0 = conv_block(tf.concat([L.UpSampling2D(name="tup0")(d1), e0], 3), 4, "td0")
    return keras.Model(inputs, L.Conv2D(1, 1, name="head")(d0), name="tf_concat_unet")
