"""The machine a run or a benchmark runs on: CPU model, vector instruction sets, cores and
threads, the TensorFlow build, whether oneDNN runs, ``ONEDNN_MAX_CPU_ISA`` and TensorFlow's
thread settings.

Training follows the order of floating-point additions, and that order depends on the
instruction set the kernels use (AVX2 or AVX-512), on whether TensorFlow's convolutions run
through oneDNN or Eigen, and on the thread counts. So a run records the machine each of its parts
ran on (``machine.json`` in the run folder, :meth:`iac_tf.run_layout.RunLayout.add_machine`), the
report shows it, and every script in ``benchmarks/`` prints it beside its figures.

Nothing here imports TensorFlow at module level: :func:`describe` asks TensorFlow only when told
to (``tensorflow=True``) or when it is already imported (``tensorflow=None``, the default).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

#: The x86 instruction-set flags (Linux ``/proc/cpuinfo`` names) that decide TensorFlow's kernels
#: and, for the VNNI / BF16 / AMX ones, whether TensorFlow turns oneDNN on by default.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
#: The environment variables that change which kernels TensorFlow runs and how many threads.
ENV_KEYS = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "TF_DETERMINISTIC_OPS")
#: The fields of a description that decide the floating-point order (:func:`kind`).
KIND_FIELDS = ("cpu_model", "cpu_family_model", "vector_isa", "onednn", "onednn_max_cpu_isa",
               "tensorflow", "tensorflow_build", "threads")


def _cpuinfo_text(path: str = "/proc/cpuinfo") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, vendor, family/model/stepping, vector flags and physical cores from the text of
    Linux's ``/proc/cpuinfo`` (empty fields where the text lacks them)."""
    first: dict[str, str] = {}
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    block: dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if block:
                if not first:
                    first = block
                flags |= set(block.get("flags", "").split())
                if "core id" in block:
                    cores.add((block.get("physical id", "0"), block["core id"]))
                block = {}
            continue
        key, _, value = line.partition(":")
        block[key.strip()] = value.strip()
    fam_model = ""
    if first.get("cpu family") or first.get("model"):
        fam_model = f"family {first.get('cpu family', '?')} model {first.get('model', '?')}"
        if first.get("stepping"):
            fam_model += f" stepping {first['stepping']}"
    return {
        "cpu_model": first.get("model name", ""),
        "cpu_vendor": first.get("vendor_id", ""),
        "cpu_family_model": fam_model,
        "vector_flags": [f for f in VECTOR_FLAGS if f in flags] if flags else None,
        "physical_cores": len(cores) or None,
    }


def vector_isa(flags) -> str:
    """The widest vector level of ``flags``: ``avx512``, ``avx2``, ``avx``, ``sse`` (or
    ``unknown`` when the flags could not be read, e.g. outside Linux)."""
    if flags is None:
        return "unknown"
    for level, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx")):
        if flag in flags:
            return level
    return "sse"


def _tensorflow_info(tf) -> dict[str, Any]:
    info: dict[str, Any] = {"tensorflow": getattr(tf, "__version__", "?")}
    try:
        build = dict(tf.sysconfig.get_build_info())
        info["tensorflow_build"] = ", ".join(
            f"{k} {build[k]}" for k in ("cpu_compiler", "is_cuda_build", "cuda_version") if k in build)
    except Exception:  # noqa: BLE001 - a build without the record
        info["tensorflow_build"] = "unknown"
    info["onednn"] = onednn_enabled()
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    info["threads"] = {"intra_op": intra, "inter_op": inter}  # 0: TensorFlow's default (all cores)
    return info


def onednn_enabled() -> bool | None:
    """Whether this process' TensorFlow runs oneDNN (``IsMklEnabled``), or None when TensorFlow
    is not imported or does not say. The answer is fixed when TensorFlow is imported (it reads
    ``TF_ENABLE_ONEDNN_OPTS`` and the CPU's features then)."""
    if "tensorflow" not in sys.modules:
        return None
    port = sys.modules.get("tensorflow.python.util._pywrap_util_port")  # loaded by TensorFlow
    try:
        return None if port is None else bool(port.IsMklEnabled())
    except Exception:  # noqa: BLE001 - another TensorFlow build
        return None


def describe(tensorflow: bool | None = None, cpuinfo: str | None = None) -> dict[str, Any]:
    """The machine as a JSON-ready mapping.

    ``tensorflow``: True imports TensorFlow (through :mod:`iac_tf._keras`) to ask it for its
    version, build, oneDNN state and thread settings; None (default) asks only if it is already
    imported; False never. ``cpuinfo``: the text of ``/proc/cpuinfo`` (default: read it).
    """
    cpu = parse_cpuinfo(_cpuinfo_text() if cpuinfo is None else cpuinfo)
    if not cpu["cpu_model"]:
        cpu["cpu_model"] = platform.processor() or platform.machine() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    out: dict[str, Any] = {
        **cpu,
        "architecture": platform.machine(),
        "system": platform.system(),
        "vector_isa": vector_isa(cpu["vector_flags"]),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "environment": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        "python": platform.python_version(),
    }
    if tensorflow or (tensorflow is None and "tensorflow" in sys.modules):
        from iac_tf._keras import tf  # noqa: PLC0415 - lazy: only when asked

        out.update(_tensorflow_info(tf))
    return out


def kind(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a description that decide the floating-point order of training: two runs
    can give the same numbers only where these are equal (and the data, config and seed)."""
    return {k: record.get(k) for k in KIND_FIELDS}


def _onednn_text(record: dict[str, Any]) -> str:
    state = record.get("onednn")
    text = "oneDNN ?" if state is None else ("oneDNN on" if state else "oneDNN off")
    if state and record.get("onednn_max_cpu_isa"):
        text += f" (ONEDNN_MAX_CPU_ISA={record['onednn_max_cpu_isa']})"
    return text


def summary(record: dict[str, Any]) -> str:
    """One line: CPU model, vector instruction sets, cores, TensorFlow and oneDNN."""
    flags = record.get("vector_flags")
    shown = [f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx", "avx_vnni"))] \
        if flags else []
    isa = " ".join(shown) if shown else record.get("vector_isa", "unknown")
    model = record.get("cpu_model") or "unknown CPU"
    if record.get("cpu_family_model"):
        model += f" ({record['cpu_family_model']})"
    cores = f"{record.get('usable_cpus')} usable of {record.get('logical_cpus')} CPUs"
    parts = [model, isa, cores]
    if "tensorflow" in record:
        threads = record.get("threads") or {}
        parts.append(f"TensorFlow {record['tensorflow']}, {_onednn_text(record)}, threads intra "
                     f"{threads.get('intra_op', '?')} / inter {threads.get('inter_op', '?')} (0: default)")
    return "; ".join(parts)


def short(record: dict[str, Any]) -> str:
    """A few words for a table cell: CPU model, vector level, oneDNN state."""
    model = record.get("cpu_model") or "unknown CPU"
    if record.get("cpu_family_model"):
        model += " " + record["cpu_family_model"].split(" stepping")[0].replace("family ", "f").replace(
            " model ", "m")
    return f"{model}, {record.get('vector_isa', 'unknown')}, {_onednn_text(record)}"


def header(tensorflow: bool | None = True) -> str:
    """The line a benchmark prints beside its figures (``machine: ...``, with the load average)."""
    try:
        load = f"; load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    return "machine: " + summary(describe(tensorflow=tensorflow)) + load
