"""The machine record: parsed CPU, vector sets and oneDNN state, the run's machine.json, the report."""

import json
import os
import subprocess
import sys

from iac_tf import machine
from iac_tf.reporting.collect import machine_text, read_run
from iac_tf.run_layout import RunLayout

# two logical CPUs of an AVX2 machine without AVX-512 (abridged /proc/cpuinfo)
AVX2_CPUINFO = "".join(
    f"processor\t: {p}\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\n"
    f"model name\t: AMD EPYC 7B12\nstepping\t: 0\nphysical id\t: 0\ncore id\t\t: {p}\n"
    "flags\t\t: fpu sse4_2 avx f16c fma avx2 bmi2\n\n" for p in range(2))


def test_cpuinfo_of_an_avx2_machine():
    cpu = machine.parse_cpuinfo(AVX2_CPUINFO)
    assert cpu["cpu_model"] == "AMD EPYC 7B12"
    assert cpu["cpu_family_model"] == "family 23 model 49 stepping 0"
    assert cpu["vector_flags"] == ["sse4_2", "avx", "avx2", "fma", "f16c"]
    assert cpu["physical_cores"] == 2
    assert machine.vector_isa(cpu["vector_flags"]) == "avx2"
    assert machine.vector_isa(["avx", "avx2", "avx512f"]) == "avx512"
    assert machine.vector_isa(None) == "unknown"  # no /proc/cpuinfo (not Linux)


def test_description_without_tensorflow_does_not_import_it():
    code = ("import sys, json; from iac_tf import machine; d = machine.describe(); "
            "print(json.dumps([d['vector_isa'], 'onednn' in d, 'tensorflow' in sys.modules]))")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    isa, asked, imported = json.loads(proc.stdout)
    assert isa in ("avx512", "avx2", "avx", "sse", "unknown") and not asked and not imported


def test_description_with_tensorflow_says_whether_onednn_runs(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    d = machine.describe(tensorflow=True, cpuinfo=AVX2_CPUINFO)
    from tensorflow.python.util import _pywrap_util_port

    assert d["onednn"] is bool(_pywrap_util_port.IsMklEnabled())
    assert d["tensorflow"].startswith("2.") and set(d["threads"]) == {"intra_op", "inter_op"}
    assert d["onednn_max_cpu_isa"] == "AVX2" and d["environment"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    line = machine.summary(d)
    assert line.startswith("AMD EPYC 7B12 (family 23 model 49 stepping 0); avx2 fma;")
    assert ("oneDNN on (ONEDNN_MAX_CPU_ISA=AVX2)" if d["onednn"] else "oneDNN off") in line
    json.dumps(d)  # JSON-ready


def test_machine_json_lists_each_kind_of_machine_a_part_ran_on_and_the_report_shows_it(tmp_path):
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    avx512 = {"cpu_model": "AMD EPYC", "cpu_family_model": "family 25 model 17", "vector_isa": "avx512",
              "onednn": True, "tensorflow": "2.21.0", "logical_cpus": 2}
    avx2 = {**avx512, "cpu_model": "AMD EPYC 7B12", "vector_isa": "avx2", "onednn": False}
    same = lambda a, b: machine.kind(a) == machine.kind(b)  # noqa: E731
    layout.add_machine("stage1", avx512, same)
    layout.add_machine("stage1", {**avx512, "logical_cpus": 4}, same)  # same kind: not added
    layout.add_machine("stage2", avx512, same)
    assert layout.read_machines() == {"stage1": [avx512], "stage2": [avx512]}
    assert machine_text(layout.read_machines()) == "AMD EPYC f25m17, avx512, oneDNN on"
    assert read_run(layout.root).machine == "AMD EPYC f25m17, avx512, oneDNN on"
    layout.add_machine("stage2", avx2, same)  # resumed on another kind
    assert layout.read_machines()["stage2"] == [avx512, avx2]
    text = read_run(layout.root).machine
    assert text.count("stage2: ") == 2 and "AMD EPYC 7B12 f25m17, avx2, oneDNN off" in text
    assert RunLayout(tmp_path / "none").read_machines() == {}
    assert read_run(tmp_path / "none").machine == "not recorded"


def test_each_stage_records_the_machine_it_starts_on(tmp_path):
    import pathlib

    from iac_tf.config.experiment import load_experiment
    from iac_tf.run_records import record_stage

    sample = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sample.yaml"
    cfg = load_experiment(sample, {"output_dir": str(tmp_path), "name": "r"})
    record_stage(cfg, 1)
    record_stage(cfg, 1)  # resumed on the same machine: still one entry
    record_stage(cfg, 3)
    machines = json.loads((tmp_path / "r" / "machine.json").read_text())
    assert sorted(machines) == ["stage1", "stage3"] and len(machines["stage1"]) == 1
    record = machines["stage3"][0]
    assert record["tensorflow"] and isinstance(record["onednn"], bool)
    assert record["vector_isa"] == machine.describe()["vector_isa"]
