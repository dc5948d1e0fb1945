"""oneDNN: who turns it on (iac_tf._flags), what `iac doctor` says, and the numerics files run a
second time with the other setting, so the Eigen path (oneDNN off) and the oneDNN path both stay
tested on every machine (docs/decisions.md, "oneDNN on every x86-64 CPU").

Covers: iac_tf/_flags.py, iac_tf/_keras.py
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iac_tf import _flags
from iac_tf._keras import onednn_enabled, onednn_status
from iac_tf.preflight import onednn_check

ROOT = Path(__file__).resolve().parents[1]

AVX2_EPYC = frozenset("fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma avx2 bmi2".split())
ZEN4 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX2_EPYC | {"avx512f", "amx_tile", "amx_bf16"}
ALDER_LAKE = AVX2_EPYC | {"avx_vnni"}

# The files whose assertions compare computed numbers (kernels, cells, composed convolutions,
# gradients) rather than files or messages: they run again with the other oneDNN setting.
NUMERICS_FILES = [
    "tests/implant/test_composed_conv.py",
    "tests/search/test_kernels.py",
    "tests/search/test_fused_cell.py",
    "tests/search/test_recompute.py",
    "tests/search/test_operations.py",
    "tests/search/test_mixed_op.py",
    "tests/search/test_psi.py",
    "tests/genotype/test_discrete_cell.py",
    "tests/inference/test_composed_iac.py",
    "tests/training/test_stage3_gradients.py",
]


@pytest.mark.parametrize("flags,expected", [
    (AVX2_EPYC, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True), (ALDER_LAKE, True),
])
def test_tensorflow_default_rule_by_cpu_features(flags, expected):
    assert _flags.onednn_on_by_default("x86_64", flags) is expected


def test_rule_unknown_off_x86_or_without_flags():
    assert _flags.onednn_on_by_default("aarch64", AVX2_EPYC) is None
    assert _flags.onednn_on_by_default("x86_64", frozenset()) is None


def test_turned_on_where_tensorflow_leaves_it_off():
    env = {}
    assert _flags.set_onednn_flag(env, "x86_64", AVX2_EPYC) == "iac_tf"
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1"}


@pytest.mark.parametrize("flags", [ZEN4, SAPPHIRE_RAPIDS])
def test_left_to_tensorflow_where_it_is_on_by_default(flags):
    env = {}
    assert _flags.set_onednn_flag(env, "x86_64", flags) == "tensorflow"
    assert env == {}


@pytest.mark.parametrize("value", ["0", "1", "false"])
def test_the_users_setting_is_kept(value):
    env = {"TF_ENABLE_ONEDNN_OPTS": value}
    assert _flags.set_onednn_flag(env, "x86_64", AVX2_EPYC) == "user"
    assert env == {"TF_ENABLE_ONEDNN_OPTS": value}


def test_not_x86_is_left_alone():
    env = {}
    assert _flags.set_onednn_flag(env, "aarch64", frozenset({"asimd"})) == "tensorflow"
    assert env == {}


def test_cpu_flags_read_from_a_cpuinfo_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx2 fma\n")
    assert _flags.cpu_flags(str(info)) == frozenset({"fpu", "avx2", "fma"})
    assert _flags.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_this_process_says_what_runs():
    status = onednn_status()
    assert status.startswith("oneDNN on (" if onednn_enabled() else "oneDNN off (")
    assert _flags.onednn_decided_by in ("user", "iac_tf", "tensorflow", "late")
    # where iac_tf decides, oneDNN runs on every x86-64 kind
    if _flags.onednn_decided_by == "iac_tf":
        assert onednn_enabled()
    row = onednn_check()
    assert row.name == "oneDNN" and row.status == ("ok" if onednn_enabled() else "warn")


def test_decided_in_a_fresh_process_before_tensorflow():
    code = ("import os, iac_tf; from iac_tf import _flags; "
            "print(_flags.onednn_decided_by, os.environ.get('TF_ENABLE_ONEDNN_OPTS')); "
            "from iac_tf._keras import onednn_enabled; print(onednn_enabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    decided, value = out.stdout.split("\n")[0].split()
    machine_default = _flags.onednn_on_by_default(os.uname().machine, _flags.cpu_flags())
    if machine_default is False:
        assert (decided, value) == ("iac_tf", "1")
        assert out.stdout.split("\n")[1] == "True"
    else:
        assert (decided, value) == ("tensorflow", "None")


@pytest.mark.slow
def test_numerics_files_pass_with_the_other_onednn_setting():
    """The suite runs with oneDNN as iac_tf decides (on, on x86-64); here the numerics files run
    once more with the other setting, in a process of their own."""
    other = "0" if onednn_enabled() else "1"
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=other, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NUMERICS_FILES]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    tail = "\n".join(out.stdout.splitlines()[-40:])
    assert out.returncode == 0, f"TF_ENABLE_ONEDNN_OPTS={other}:\n{tail}\n{out.stderr[-2000:]}"
    assert " passed" in tail and " failed" not in tail, tail
