"""The experiment YAML: one file configures data, the U-Net and all three stages.

```yaml
name: sample_base            # results go to {output_dir}/{name}/
output_dir: runs
seed: 0
deterministic: false         # TF op determinism (slower; exact resume of Stage II)
data:   {...}                # iac_tf.data.DataConfig
unet:   {backbone: base}     # UNetConfig
stage1: {epochs: 200}        # Stage1Config
stage2: {epochs: 200}        # Stage2Config
stage3: {epochs: 200}        # Stage3Config
evaluation: {split: val_dt}  # EvaluationConfig
method: iac                  # what the run improves the U-Net with (iac or a comparison)
compare: [attention]         # comparison methods trained on the same frozen U-Net and splits
```
Every section is a frozen dataclass: unknown keys and wrong types are rejected with the key's
dotted path. Loading a config imports no TensorFlow. The resolved config and the code version
are written into the run folder, and each stage folder records the resolved config it ran with
(:mod:`iac_tf.run_records`).
"""

from iac_tf.config.experiment import (COMPARISON_METHODS, EvaluationConfig, ExperimentConfig,
                                      UNetConfig, check_run_name, load_experiment)
from iac_tf.config.stages import Stage1Config, Stage2Config, Stage3Config

__all__ = ["COMPARISON_METHODS", "EvaluationConfig", "ExperimentConfig", "Stage1Config",
           "Stage2Config", "Stage3Config", "UNetConfig", "check_run_name", "load_experiment"]
