"""The model: a small U-Net (:func:`build_unet`) for binary or multi-class masks."""

from __future__ import annotations

import keras


def build_unet(image_size=None, *, width=8, depth=3, channels_in=1, num_classes=1,
               logits=False, batch_norm=True, bn_momentum=0.9) -> keras.Model:
    """A small U-Net: ``depth`` times (two 3x3 Conv-BN-ReLU, 2x2 max-pool) down, a
    bottleneck, and ``depth`` times (2x2 transposed conv, concatenate the skip, two
    Conv-BN-ReLU) up; filters ``width * 2**level``. The output is a sigmoid (softmax for
    ``num_classes > 1``), or linear logits when ``logits=True``; it is float32 even
    under mixed precision. ``image_size=None`` accepts any side divisible by
    ``2**depth``."""
    if image_size is not None and image_size % 2 ** depth:
        raise ValueError(f"image_size must be divisible by 2**depth = {2 ** depth}, "
                         f"got {image_size}")
    if width < 1 or depth < 0:
        raise ValueError(f"need width >= 1 and depth >= 0, got width={width}, depth={depth}")

    def block(x, filters, name):
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                                    name=f"{name}_conv{i}")(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(momentum=bn_momentum,
                                                    name=f"{name}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
        return x

    inputs = keras.Input((image_size, image_size, channels_in), name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, width * 2 ** level, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = block(x, width * 2 ** depth, "bottom")
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(width * 2 ** level, 2, strides=2,
                                         name=f"up{level}_tconv")(x)
        x = keras.layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = block(x, width * 2 ** level, f"up{level}")
    x = keras.layers.Conv2D(num_classes, 1, name="head")(x)
    activation = "linear" if logits else ("sigmoid" if num_classes == 1 else "softmax")
    outputs = keras.layers.Activation(activation, dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="unet")
