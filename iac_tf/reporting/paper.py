"""The paper's own numbers, as data (the IAC paper, Sections IV-V).

Used by ``experiments/paper_numbers.py`` (Table VI through the Section V-C statistics) and by the
report (Table III's published hours of the other NAS methods, labelled as literature values).
Values are copied as printed, typos included (KiTS ConvNeXt-Base EP 100 reads ``0.8133``).
"""

from __future__ import annotations

DATASETS = ("ACDC", "AMOS", "BRATS", "KITS")
BACKBONES = ("base", "vgg16", "resnet50", "mobilenetv3_large", "efficientnetv2_s",
             "efficientnetv2_m", "convnext_tiny", "convnext_base")
GENOTYPE_EPOCHS = (25, 50, 100, 150, 200)

# Table VI: (baseline "BSLN", EP 25, EP 50, EP 100, EP 150, EP 200) per dataset, backbone.
TABLE_VI: dict[str, dict[str, tuple[float, ...]]] = {
    "ACDC": {
        "base": (0.919, 0.915, 0.915, 0.912, 0.912, 0.911),
        "vgg16": (0.936, 0.931, 0.925, 0.932, 0.934, 0.930),
        "resnet50": (0.921, 0.914, 0.913, 0.914, 0.914, 0.916),
        "mobilenetv3_large": (0.273, 0.375, 0.401, 0.506, 0.375, 0.619),
        "efficientnetv2_s": (0.920, 0.919, 0.924, 0.920, 0.923, 0.919),
        "efficientnetv2_m": (0.925, 0.923, 0.924, 0.924, 0.923, 0.922),
        "convnext_tiny": (0.866, 0.632, 0.397, 0.826, 0.768, 0.751),
        "convnext_base": (0.879, 0.717, 0.883, 0.676, 0.760, 0.401),
    },
    "AMOS": {
        "base": (0.403, 0.506, 0.486, 0.528, 0.549, 0.539),
        "vgg16": (0.581, 0.632, 0.609, 0.627, 0.605, 0.632),
        "resnet50": (0.541, 0.530, 0.584, 0.553, 0.558, 0.634),
        "mobilenetv3_large": (0.255, 0.536, 0.474, 0.503, 0.540, 0.419),
        "efficientnetv2_s": (0.634, 0.595, 0.598, 0.591, 0.620, 0.622),
        "efficientnetv2_m": (0.618, 0.644, 0.629, 0.623, 0.660, 0.633),
        "convnext_tiny": (0.071, 0.175, 0.162, 0.176, 0.196, 0.196),
        "convnext_base": (0.070, 0.164, 0.183, 0.163, 0.176, 0.185),
    },
    "BRATS": {
        "base": (0.848, 0.850, 0.850, 0.850, 0.852, 0.852),
        "vgg16": (0.857, 0.855, 0.856, 0.855, 0.855, 0.852),
        "resnet50": (0.855, 0.855, 0.855, 0.858, 0.854, 0.855),
        "mobilenetv3_large": (0.841, 0.842, 0.848, 0.850, 0.851, 0.844),
        "efficientnetv2_s": (0.854, 0.857, 0.856, 0.858, 0.855, 0.855),
        "efficientnetv2_m": (0.855, 0.856, 0.856, 0.856, 0.857, 0.856),
        "convnext_tiny": (0.836, 0.834, 0.835, 0.820, 0.808, 0.834),
        "convnext_base": (0.826, 0.794, 0.758, 0.8133, 0.785, 0.810),
    },
    "KITS": {
        "base": (0.445, 0.606, 0.467, 0.630, 0.625, 0.595),
        "vgg16": (0.452, 0.603, 0.456, 0.429, 0.602, 0.447),
        "resnet50": (0.598, 0.631, 0.612, 0.622, 0.608, 0.601),
        "mobilenetv3_large": (0.071, 0.276, 0.288, 0.280, 0.290, 0.091),
        "efficientnetv2_s": (0.451, 0.616, 0.607, 0.640, 0.601, 0.611),
        "efficientnetv2_m": (0.609, 0.625, 0.618, 0.618, 0.615, 0.618),
        "convnext_tiny": (0.266, 0.256, 0.262, 0.263, 0.235, 0.287),
        "convnext_base": (0.278, 0.283, 0.312, 0.285, 0.322, 0.291),
    },
}

# Table I: (train, val) Dice of the U-Nets, columns as printed (ACDC, AMOS, BRATS, KITS).
TABLE_I: dict[str, dict[str, tuple[float, float]]] = {
    "base": {"ACDC": (0.965, 0.727), "AMOS": (0.876, 0.595), "BRATS": (0.919, 0.403), "KITS": (0.848, 0.445)},
    "vgg16": {"ACDC": (0.96, 0.757), "AMOS": (0.922, 0.626), "BRATS": (0.936, 0.581), "KITS": (0.857, 0.452)},
    "resnet50": {"ACDC": (0.956, 0.684), "AMOS": (0.904, 0.633), "BRATS": (0.92, 0.542), "KITS": (0.854, 0.598)},
    "mobilenetv3_large": {"ACDC": (0.960, 0.722), "AMOS": (0.885, 0.453), "BRATS": (0.273, 0.254),
                          "KITS": (0.841, 0.072)},
    "efficientnetv2_s": {"ACDC": (0.956, 0.719), "AMOS": (0.926, 0.641), "BRATS": (0.92, 0.634),
                         "KITS": (0.854, 0.451)},
    "efficientnetv2_m": {"ACDC": (0.966, 0.67), "AMOS": (0.924, 0.707), "BRATS": (0.925, 0.618),
                         "KITS": (0.855, 0.609)},
    "convnext_tiny": {"ACDC": (0.935, 0.071), "AMOS": (0.917, 0.294), "BRATS": (0.866, 0.068),
                      "KITS": (0.836, 0.266)},
    "convnext_base": {"ACDC": (0.929, 0.070), "AMOS": (0.909, 0.331), "BRATS": (0.879, 0.069),
                      "KITS": (0.826, 0.278)},
}

# Table II: mean ("variance") Dice change over the U-Net per dataset and method, as printed.
TABLE_II = {
    "iac": {"ACDC": (0.04, 0.13), "AMOS": (0.11, 0.09), "BRATS": (0.00, 0.01), "KITS": (0.11, 0.09),
            "AVERAGE": (0.06, 0.10)},
    "attention": {"ACDC": (0.01, 0.05), "AMOS": (-0.04, 0.10), "BRATS": (0.00, 0.00),
                  "KITS": (0.03, 0.11), "AVERAGE": (0.00, 0.08)},
    "residual_attention": {"ACDC": (-0.01, 0.06), "AMOS": (0.07, 0.08), "BRATS": (-0.02, 0.05),
                           "KITS": (0.09, 0.09), "AVERAGE": (0.03, 0.08)},
    "nested": {"ACDC": (0.01, 0.02), "AMOS": (0.03, 0.03), "BRATS": (0.00, 0.00), "KITS": (0.08, 0.08),
               "AVERAGE": (0.03, 0.05)},
}

# Table IV: mean Dice (95% CI) per dataset: baseline, IAC, U-Net++.
TABLE_IV = {
    "ACDC": ((0.83, 0.64, 1.02), (0.87, 0.78, 0.96), (0.84, 0.66, 1.03)),
    "AMOS": ((0.40, 0.20, 0.59), (0.50, 0.34, 0.67), (0.42, 0.23, 0.61)),
    "BRATS": ((0.85, 0.84, 0.86), (0.85, 0.83, 0.86), (0.85, 0.84, 0.86)),
    "KITS": ((0.40, 0.24, 0.55), (0.50, 0.36, 0.65), (0.48, 0.36, 0.59)),
    "OVERALL": ((0.62, 0.51, 0.72), (0.68, 0.60, 0.76), (0.65, 0.56, 0.74)),
}

# Table V: mean Dice (95% CI) per backbone: baseline, IAC, U-Net++.
TABLE_V = {
    "base": ((0.65, 0.23, 1.08), (0.74, 0.46, 1.01), (0.67, 0.29, 1.06)),
    "vgg16": ((0.71, 0.34, 1.07), (0.76, 0.50, 1.02), (0.75, 0.48, 1.02)),
    "resnet50": ((0.73, 0.43, 1.03), (0.76, 0.52, 1.00), (0.73, 0.43, 1.03)),
    "mobilenetv3_large": ((0.36, -0.17, 0.89), (0.57, 0.21, 0.94), (0.42, -0.02, 0.87)),
    "efficientnetv2_s": ((0.71, 0.37, 1.06), (0.76, 0.52, 1.00), (0.75, 0.49, 1.01)),
    "efficientnetv2_m": ((0.75, 0.49, 1.01), (0.77, 0.53, 1.00), (0.76, 0.51, 1.09)),
    "convnext_tiny": ((0.51, -0.13, 1.15), (0.54, -0.01, 1.08), (0.56, -0.04, 1.16)),
    "convnext_base": ((0.51, -0.13, 1.15), (0.55, 0.00, 1.11), (0.54, -0.08, 1.17)),
}

# Section V-C / V-D statements the paper makes about the 32 settings.
STATEMENTS = {
    "mean_gain": 0.063,
    "t_test_p": 0.0008,
    "wilcoxon_p": "< 0.001",
    "wilcoxon_z": 3.51,
    "wilcoxon_greater_p": "< 0.001",
    "improved_fraction": 0.72,
    "improved_fraction_without_acdc": 0.83,
    "nested_mean_gain": 0.0315,
    "nested_t_test_p": 0.0016,
    "nested_wilcoxon_p": 0.002,
}

# Table III: the other NAS methods' hours as the paper gives them (literature values, rescaled by
# the paper to an RTX 3090 Ti), and the paper's own Stage II + III hours (mean (std) over backbones).
TABLE_III_LITERATURE = {
    "NAS-UNet": {"BRATS": 22.0},
    "DiNTS": {"AMOS": 51.0, "KITS": 51.0},
    "HyperSegNas": {"AMOS": 22.0},
}
TABLE_III_PAPER_HOURS = {"ACDC": (0.5, 0.1), "AMOS": (5.0, 1.4), "BRATS": (11.0, 2.5), "KITS": (4.5, 2.8)}
TABLE_III_GPU = "RTX 3090 Ti"


def best_epoch_scores() -> tuple[list[tuple[str, str]], list[float], list[float]]:
    """(settings, baseline, IAC) with IAC = the best of the five genotype epochs per setting, the
    reading that reproduces Table IV's IAC means (e.g. ACDC 0.87)."""
    settings, base, iac = [], [], []
    for ds in DATASETS:
        for bb in BACKBONES:
            row = TABLE_VI[ds][bb]
            settings.append((ds, bb))
            base.append(row[0])
            iac.append(max(row[1:]))
    return settings, base, iac
