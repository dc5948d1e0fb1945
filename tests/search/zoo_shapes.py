"""Skip-connection shapes of the zoo U-Nets at 128x128 input: (H, Cu (decoder), Cs (skip), name)."""

# segmentation-models decoders (filters 256, 128, 64, 32, 16) and a Ronneberger base U-Net.
ZOO_LEVELS = [
    (128, 64, 64, "base_unet_l0"),
    (64, 32, 64, "resnet50_l3"),
    (32, 64, 256, "resnet50_l2"),
    (16, 128, 512, "vgg16_l1"),
]
