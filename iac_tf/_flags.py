"""The environment flags that must be set before TensorFlow is imported (no TensorFlow import
here, so ``import iac_tf`` and ``iac --help`` stay fast)."""

from __future__ import annotations

import os
import platform
import sys

_FLAGS = {"TF_USE_LEGACY_KERAS": "1", "SM_FRAMEWORK": "tf.keras"}

KERAS3_MESSAGE = (
    "iac_tf needs the Keras 2 API (tf_keras), but TensorFlow was already imported with Keras 3 "
    "behind tf.keras. Set the environment variable TF_USE_LEGACY_KERAS=1 before anything imports "
    "TensorFlow (e.g. `export TF_USE_LEGACY_KERAS=1`, or `os.environ['TF_USE_LEGACY_KERAS'] = '1'` "
    "as the first line of your script/notebook), or import iac_tf before tensorflow. Restart the "
    "Python process after changing it."
)


def set_keras_flags() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1`` and ``SM_FRAMEWORK=tf.keras`` unless TensorFlow is already
    imported; refuse conflicting values. Also decide oneDNN (`set_onednn_flag`)."""
    tf_already_imported = "tensorflow" in sys.modules
    for key, value in _FLAGS.items():
        current = os.environ.get(key)
        if current is not None and current != value:
            raise ImportError(
                f"iac_tf: environment variable {key}={current!r} conflicts with the required "
                f"{key}={value!r}. Unset it or set it to {value!r}."
            )
        if current is None and not tf_already_imported:
            os.environ[key] = value
        elif current is None and key == "SM_FRAMEWORK":
            os.environ[key] = value
    set_onednn_flag()




# oneDNN: TensorFlow's x86 builds turn it on by default only on CPUs with one of these features
# (tensorflow/tsl/util: IsMKLEnabled); elsewhere, e.g. on AVX2-only CPUs, every convolution takes
# the Eigen path, which is several times slower for the search cells and has no dilated input
# gradient (`Conv2DBackpropInput` with dilation > 1). See docs/decisions.md, "oneDNN".
ONEDNN_DEFAULT_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                           "amx_bf16")
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

# What `set_onednn_flag` decided in this process: "user" (the user set the variable), "iac_tf"
# (iac_tf turned it on), "tensorflow" (left to TensorFlow's default), "late" (TensorFlow was
# already imported: nothing could be changed).
onednn_decided_by: str | None = None


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no such file)."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def onednn_on_by_default(machine: str, flags: frozenset[str]) -> bool | None:
    """Whether TensorFlow turns oneDNN on by itself on this CPU; None where the rule is not known
    (not x86-64, or no flags to read)."""
    if machine.lower() not in ("x86_64", "amd64") or not flags:
        return None
    return any(feature in flags for feature in ONEDNN_DEFAULT_FEATURES)


def set_onednn_flag(environ=None, machine: str | None = None,
                    flags: frozenset[str] | None = None) -> str:
    """Turn oneDNN on (``TF_ENABLE_ONEDNN_OPTS=1``) on x86-64 CPUs where TensorFlow leaves it off,
    unless the user set the variable (any value is kept) or TensorFlow is already imported.
    Returns who decided (see ``onednn_decided_by``)."""
    global onednn_decided_by
    if environ is None and onednn_decided_by is not None:
        return onednn_decided_by
    env = os.environ if environ is None else environ
    if env.get(ONEDNN_VARIABLE, "").strip():
        decided = "user"
    elif "tensorflow" in sys.modules and environ is None:
        decided = "late"
    else:
        machine = platform.machine() if machine is None else machine
        flags = cpu_flags() if flags is None else flags
        if onednn_on_by_default(machine, flags) is False:
            env[ONEDNN_VARIABLE] = "1"
            decided = "iac_tf"
        else:
            decided = "tensorflow"
    if environ is None:
        onednn_decided_by = decided
    return decided
