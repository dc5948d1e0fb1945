"""Benchmark: cost of one Stage II search iteration against one Stage I training step, and the
supernet's peak memory for K = 1, 2, 4, 8.

    python benchmarks/search_step.py                       # base and resnet50, batch 8, 128x128
    python benchmarks/search_step.py --backbones base --batch 4 --ks 1 4

Timing: both steps are traced once (warm-up), then run in turns (Stage I, search, Stage I, ...)
``--repeats`` times each on the same batch; their medians and the median of the per-turn ratios
are printed. The ratio is what to compare across machines. Each cell implementation is timed
with the cells absorbing the U-Net's upsampling before them and convolution after them (Stage
II's default, ``fuse_upsampling`` and ``fuse_output_conv``) and without (``--absorb on off``), so
both are in one run.
For the search step, the time to the first step is printed in three parts, measured in a fresh
process (as a user's ``iac search`` starts; in the benchmark's own process, after a Stage I
model, the same trace measured 3-10 s slower): building the supernet, tracing the step
(``get_concrete_function``), and the first call (graph optimisation and kernel set-up).

Memory: each configuration runs in a fresh subprocess (so peaks don't mix) that performs two
steps. The number is TensorFlow's own allocator statistics (``get_memory_info``: bytes in use,
peak): on a GPU its allocator, on a CPU the BFC allocator the child switches on with
``TF_CPU_ALLOCATOR_USE_BFC=true`` (TensorFlow's default CPU allocator keeps no statistics).
Where neither is available it falls back to the process's peak RSS and says so in the output.
The whole supernet's peak includes the TensorFlow runtime, the U-Net and its activations, so the
cells' activation memory is measured separately: the search cells of the U-Net's skip connections
alone (same shapes, a fixed upstream gradient per cell output as the decoder would return), one
traced training step whose backward pass runs in the supernet's order (after the whole forward
pass, then cell by cell from the top cell down), three numbers: the activations the forward pass
keeps for the backward pass (``saved``: counted exactly on the traced graph), the allocator's
bytes in use at the turn between the two passes (``turn``: the same activations as the
allocator holds them) and its peak during the step (``peak``: adds the backward pass's
temporaries), the last two minus the bytes in use before the step. Children run one op at a
time (inter-op threads 1); the peak still depends on the op order, so each K runs in several
fresh processes and the median and range are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "--child" in sys.argv and "first-step" not in sys.argv:  # memory children, before TensorFlow
    # is imported: a CPU allocator that keeps statistics
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import numpy as np  # noqa: E402

import iac_tf  # noqa: E402,F401
from iac_tf._keras import keras, tf  # noqa: E402
from iac_tf.machine import header  # noqa: E402


def _unet(backbone: str, size: int, base_filters: int | None):
    from iac_tf.unets import build_unet

    kwargs = {"base_filters": base_filters} if backbone == "base" and base_filters else {}
    return build_unet(backbone, input_shape=(size, size, 1), classes=2, **kwargs)


def _batch(batch: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, size, size, 1)).astype(np.float32)
    y = (rng.random((batch, size, size, 2)) > 0.7).astype(np.float32)
    return tf.constant(x), tf.constant(y)


def _stage1_step(backbone, size, batch, base_filters):
    from iac_tf.config.stages import Stage1Config
    from iac_tf.training.fit import compile_for_training

    model = _unet(backbone, size, base_filters)
    compile_for_training(model, Stage1Config())
    x, y = _batch(batch, size)
    step = tf.function(model.train_step)
    return lambda: step((x, y)), model


def _search_step(backbone, size, batch, base_filters, K, C, implementation="fused", absorb=True):
    from iac_tf.training.stage2 import Stage2Config, build_supernet

    unet = _unet(backbone, size, base_filters)
    sn = build_supernet(unet, Stage2Config(cell_channels=C, partial_channels=K,
                                           cell_implementation=implementation,
                                           fuse_output_conv=absorb, fuse_upsampling=absorb))
    sn.search_active = True
    tr, val = _batch(batch, size, 0), _batch(batch, size, 1)
    step = tf.function(sn.train_step)

    def run():
        return step((tr, val))

    run.trace = lambda: step.get_concrete_function((tr, val))  # trace only, no execution
    return run, sn


def _median_seconds(fn, repeats: int) -> float:
    _sync(fn())  # warm-up / trace
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _interleaved_seconds(fns, repeats: int) -> tuple[list[float], float]:
    """Median seconds of each of ``fns`` (each traced and run once first), timed in turns
    ``f0, f1, f0, f1, ...``, and the median of the per-turn ratios ``f1 / f0``: a drift in the
    shared machine's speed then moves both alike (timed one after the other, the ratio of the
    same code varied by up to 25 %)."""
    for fn in fns:
        _sync(fn())
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            _sync(fn())
            ts.append(time.perf_counter() - t0)
    ratio = statistics.median(b / a for a, b in zip(times[0], times[1]))
    return [statistics.median(ts) for ts in times], ratio


def _sync(out):
    for v in tf.nest.flatten(out):
        if hasattr(v, "numpy"):
            v.numpy()


def _cells_step(backbone, size, batch, base_filters, K, C, implementation="fused", absorb=True):
    """Only the search cells of ``backbone``'s skip connections (same shapes, shared alpha/beta),
    trained on their own: their activation memory without the U-Net's.

    The backward pass runs in the supernet's order: only after the whole forward pass (the loss
    needs every cell), then cell by cell from the top (highest-resolution) cell down, each cell
    getting its fixed upstream gradient (as the frozen decoder hands it back) only when the
    cell above is done. At the turn between the passes a ``py_function`` reads the allocator's
    bytes in use (``step.turn_mib``, one value per call): the activations the forward pass keeps,
    as the allocator holds them.

    ``absorb``: as Stage II does by default (``fuse_upsampling``, ``fuse_output_conv``), a cell
    takes the tensor before the U-Net's nearest upsampling where that alone feeds its ``up``
    input, and ends in the U-Net's next frozen convolution composed with its output convolution
    (`ComposedConv`), getting its upstream gradient there; the same rules as `implant`.
    """
    from iac_tf.implant import freeze_unet
    from iac_tf.implant.graph import build_graph
    from iac_tf.implant.rebuild import absorptions, reader_counts, sole_consumers
    from iac_tf.implant.skips import locate_skips
    from iac_tf.search import ArchitectureParameters, SearchCell
    from iac_tf.implant.search_module import SearchModule

    unet = _unet(backbone, size, base_filters)
    graph = build_graph(unet)
    located = locate_skips(graph)
    skips = [skip for skip, _ in located]
    readers, sole = reader_counts(graph), sole_consumers(graph)
    freeze_unet(unet)
    keras.backend.clear_session()
    arch = ArchitectureParameters(name="arch")
    inputs, outputs, cells = [], [], []
    for s, call in located:
        cell = SearchCell(out_channels=s.out_shape[-1], C=C, K=K, implementation=implementation,
                          name=f"cell{s.level}")
        module = SearchModule(arch, cell, fuse_upsampling=absorb, fuse_output_conv=absorb)
        before_up, _, fused = absorptions(module, graph, s, call, readers, sole)
        up = keras.Input(graph.shapes[before_up][1:] if before_up is not None else s.up_shape)
        skip = keras.Input(s.skip_shape)
        inputs += [up, skip]
        outputs.append(fused([up, skip]) if fused is not None else module([up, skip]))
        cells.append(cell)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    xs = [tf.constant(rng.normal(size=(batch,) + tuple(t.shape[1:])).astype(np.float32)) for t in inputs]
    opt = keras.optimizers.SGD(0.01)

    # A fixed upstream gradient per cell output, as the frozen decoder hands it back in the
    # supernet: a linear loss keeps no copy of the cells' outputs (a squared loss would keep
    # them all for its own backward pass, which is not the cells' memory).
    upstream = [tf.constant(rng.normal(size=(batch,) + tuple(o.shape[1:])).astype(np.float32))
                for o in model.outputs]
    top_first = sorted(range(len(skips)), key=lambda j: -skips[j].level)  # level 0 = deepest
    forward_ops, turn_mib = {}, []

    def read_in_use(loss):
        stats = _allocator_mib()
        turn_mib.append(stats[0] if stats is not None else float("nan"))
        return loss

    @tf.function
    def step():
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(xs, training=True)
            losses = [tf.reduce_sum(o * g) for o, g in zip(outputs, upstream)]
        # every op created from here on belongs to the backward pass (or the update), whatever
        # its name (ops of a tf.custom_gradient are not named gradient_tape/...)
        forward_ops["count"] = len(tf.compat.v1.get_default_graph().get_operations())
        loss = tf.add_n(losses)
        # Without these dependencies each cell's backward could start right after its own
        # forward (its upstream gradient is a constant), which the supernet never does; the
        # peak then depended on the op order and varied 0.29x-0.42x (K=4 / K=1) between
        # identical processes.
        # A py_function is also a gate TensorFlow cannot fold away. A draft gated by
        # tf.ones_like(loss) (and differentiating each cell's output, not its loss term) still
        # ranged 857-1059 MiB at K=4 over four processes.
        gate = [tf.py_function(read_in_use, [loss], tf.float32)]
        arch_vars, arch_grads, pairs = arch.trainable_variables, None, []
        for j in top_first:
            with tf.control_dependencies(gate):
                seed = tf.ones([], tf.float32)
            own = cells[j].trainable_variables
            grads = tape.gradient(losses[j], own + arch_vars, output_gradients=seed)
            own_grads, shared = grads[:len(own)], grads[len(own):]  # alpha/beta: summed over cells
            pairs += list(zip(own_grads, own))
            arch_grads = shared if arch_grads is None else [a + b for a, b in zip(arch_grads, shared)]
            gate = [g for g in grads if g is not None]
        opt.apply_gradients(pairs + list(zip(arch_grads, arch_vars)))
        return loss

    step.get_concrete_function()  # trace before the baseline reading
    step.forward_ops = forward_ops
    step.turn_mib = turn_mib
    return step, model


def _device() -> str:
    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


def _allocator_mib() -> tuple[float, float] | None:
    """(bytes in use, peak) of TensorFlow's allocator in MiB, or None where it keeps no statistics."""
    try:
        info = tf.config.experimental.get_memory_info(_device())
    except (ValueError, tf.errors.OpError):
        return None
    return info["current"] / 2**20, info["peak"] / 2**20


_VIEWS = ("Reshape", "ExpandDims", "Squeeze", "Identity")


def ops_run(concrete) -> set[str]:
    """Names of the ops of a concrete function that its results and side effects need (what
    the runtime executes; a traced gradient also holds ops that nothing uses)."""
    needed, todo = set(), [t.op for t in concrete.outputs] + list(concrete.graph.control_outputs)
    while todo:
        op = todo.pop()
        if op.name not in needed:
            needed.add(op.name)
            todo.extend(t.op for t in op.inputs)
            todo.extend(op.control_inputs)
    return needed


def saved_activation_mib(step) -> float:
    """MiB of the tensors the forward pass of the traced ``step`` keeps for its backward pass.

    Counted on the graph of the tf.function: the outputs of forward ops that are inputs of
    backward ops (the ops created after the forward pass, as ``_cells_step`` records: ops of a
    ``tf.custom_gradient`` are not named ``gradient_tape/...``) which the step's results need,
    each buffer once (reshapes and other views are followed to the tensor they alias);
    constants and variable reads are not activations. Counted from static shapes, independent of
    the order in which ops run, on the graph before TensorFlow's optimisations (they merge
    identical expressions, which the edge-by-edge reference cell has many of, so for it this is
    an upper bound); what the allocator's peak adds are the backward pass's temporaries.
    """
    fn = step.get_concrete_function()
    needed = ops_run(fn)
    ops = fn.graph.get_operations()
    backward = {op.name for op in ops[step.forward_ops["count"]:]}
    kept = {}
    for op in ops:
        if not (op.name in backward and op.name in needed):
            continue
        for t in op.inputs:
            while t.op.type in _VIEWS and t.op.name not in backward:
                t = t.op.inputs[0]
            if t.op.name in backward or t.op.type in ("Const", "ReadVariableOp", "Placeholder"):
                continue
            kept[t.name] = (t.shape.num_elements() or 0) * t.dtype.size
    return sum(kept.values()) / 2**20


def _peak_mib() -> tuple[float, str]:
    """(peak MiB, source): the allocator's peak where it keeps one, else the process's peak RSS."""
    stats = _allocator_mib()
    if stats is not None:
        return stats[1], f"tensorflow_allocator_peak ({_device()}{', BFC' if _device() == 'CPU:0' else ''})"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"  # KiB -> MiB


def _peak_memory_child(kind: str, backbone: str, size: int, batch: int, base_filters, K: int, C: int,
                       implementation: str = "fused", absorb: bool = True) -> None:
    # one op at a time: the peak of a graph run depends on the order in which independent ops
    # run; with several inter-op threads it varied by ~10 % between identical processes
    tf.config.threading.set_inter_op_parallelism_threads(1)
    saved = None
    if kind == "stage1":
        fn = _stage1_step(backbone, size, batch, base_filters)[0]
    elif kind == "search":
        fn = _search_step(backbone, size, batch, base_filters, K, C, absorb=absorb)[0]
    else:
        fn = _cells_step(backbone, size, batch, base_filters, K, C, implementation, absorb)[0]
        saved = saved_activation_mib(fn)
    stats = _allocator_mib()
    if stats is not None:  # peak from here on, against the bytes held before the step
        tf.config.experimental.reset_memory_stats(_device())
        before = _allocator_mib()[0]
    else:
        before, _ = _peak_mib()
    _sync(fn())
    _sync(fn())
    peak, source = _peak_mib()
    turn = fn.turn_mib[-1] if getattr(fn, "turn_mib", None) else None  # the second step's
    print(json.dumps({"peak_mib": peak, "before_mib": before, "source": source, "saved_mib": saved,
                      "turn_mib": turn}))


def _first_step_child(backbone, size, batch, base_filters, K, C, implementation, absorb) -> None:
    t0 = time.perf_counter()
    step = _search_step(backbone, size, batch, base_filters, K, C, implementation, absorb)[0]
    t1 = time.perf_counter()
    ops = len(step.trace().graph.get_operations())  # the traced step's graph ops (deterministic)
    t2 = time.perf_counter()
    _sync(step())
    t3 = time.perf_counter()
    print(json.dumps({"build": t1 - t0, "trace": t2 - t1, "first": t3 - t2, "ops": ops}))


def _run_child(args, kind, backbone, K=0, implementation="fused", absorb="on"):
    cmd = [sys.executable, __file__, "--child", kind, "--backbones", backbone, "--batch", str(args.batch),
           "--size", str(args.size), "--k-child", str(K), "--cell-channels", str(args.cell_channels),
           "--implementation", implementation, "--absorb", absorb]
    if args.base_filters:
        cmd += ["--base-filters", str(args.base_filters)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=["base", "resnet50"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cell-channels", type=int, default=16)
    p.add_argument("--k", type=int, default=4, help="K used for the timing")
    p.add_argument("--ks", type=int, nargs="*", default=[1, 2, 4, 8], help="K values for memory")
    p.add_argument("--memory-backbone", default="base")
    p.add_argument("--mem-repeats", type=int, default=3)
    p.add_argument("--base-filters", type=int, default=None)
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--implementations", nargs="+", default=["reference", "fused"],
                   help="SearchCell implementations to time (reference = the cell before the fused path)")
    p.add_argument("--absorb", nargs="+", default=["on", "off"], choices=["on", "off"],
                   help="cells absorb the U-Net's upsampling before and convolution after them "
                        "(Stage II's fuse_upsampling and fuse_output_conv, default) or not")
    p.add_argument("--child", choices=["stage1", "search", "cells", "first-step"], help=argparse.SUPPRESS)
    p.add_argument("--k-child", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--implementation", default="fused", help=argparse.SUPPRESS)
    p.add_argument("--cells-only", action="store_true", help="memory: only the cells-alone rows")
    args = p.parse_args(argv)

    if args.child == "first-step":
        _first_step_child(args.backbones[0], args.size, args.batch, args.base_filters, args.k_child,
                          args.cell_channels, args.implementation, args.absorb[0] == "on")
        return
    if args.child:
        _peak_memory_child(args.child, args.backbones[0], args.size, args.batch, args.base_filters,
                           args.k_child, args.cell_channels, args.implementation,
                           args.absorb[0] == "on")
        return

    print(header(), flush=True)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}; batch {args.batch}; input {args.size}x{args.size}x1; 2 classes; "
          f"C={args.cell_channels}")
    if not args.skip_timing:
        print(f"load average {os.getloadavg()[0]:.1f}")
        print("\n| backbone | cell | absorb | Stage I step (s) | search iteration (s), K=%d | "
              "ratio | supernet build (s) | trace (s) | traced ops | first search iteration after "
              "the trace (s) |" % args.k)
        print("|---|---|---|---|---|---|---|---|---|---|")
        for backbone in args.backbones:
            for impl in args.implementations:
                for absorb in args.absorb:
                    first = _run_child(args, "first-step", backbone, args.k, impl, absorb)
                    keras.backend.clear_session()
                    stage1 = _stage1_step(backbone, args.size, args.batch, args.base_filters)[0]
                    step = _search_step(backbone, args.size, args.batch, args.base_filters, args.k,
                                        args.cell_channels, impl, absorb == "on")[0]
                    (t1, t2), ratio = _interleaved_seconds([stage1, step], args.repeats)
                    print(f"| {backbone} | {impl} | {absorb} | {t1:.3f} | {t2:.3f} | {ratio:.2f} | "
                          f"{first['build']:.1f} | {first['trace']:.1f} | {first['ops']} | "
                          f"{first['first']:.1f} |", flush=True)
    if args.ks:
        b = args.memory_backbone
        if not args.cells_only:
            base = _run_child(args, "stage1", b)
            print(f"\npeak memory ({base['source']}), backbone {b}: Stage I step {base['peak_mib']:.0f} MiB")
            print("| K | supernet peak (MiB) |")
            print("|---|---|")
            for K in args.ks:
                print(f"| {K} | {_run_child(args, 'search', b, K)['peak_mib']:.0f} |", flush=True)
        print(f"\nsearch cells of the {b} U-Net's skips alone, one training step (MiB); saved = "
              "activations the forward pass keeps for the backward pass (exact, from the traced "
              "graph); turn = allocator bytes in use between the forward and the backward pass; "
              "peak = allocator peak during the step; both minus the bytes held before the step, "
              f"median (min-max) of {args.mem_repeats} fresh processes per K, run in turns")
        print("| implementation | absorb | measure | " + " | ".join(f"K={K}" for K in args.ks)
              + " | K=%d / K=%d (medians) |" % (args.ks[-1], args.ks[0]))
        print("|---|---|---|" + "---|" * (len(args.ks) + 1))
        for impl, absorb in [(i, o) for i in args.implementations for o in args.absorb]:
            runs = {K: [] for K in args.ks}
            for _ in range(args.mem_repeats):  # K=1, K=4, K=1, ...: host conditions spread over both
                for K in args.ks:
                    runs[K].append(_run_child(args, "cells", b, K, impl, absorb))
            for measure in ("saved", "turn", "peak"):
                cols, medians = [], []
                for K in args.ks:
                    if measure == "saved":
                        values = [runs[K][0]["saved_mib"]]
                    else:
                        values = [r[f"{measure}_mib"] - r["before_mib"] for r in runs[K]]
                    medians.append(statistics.median(values))
                    spread = f" ({min(values):.0f}-{max(values):.0f})" if len(values) > 1 else ""
                    cols.append(f"{medians[-1]:.0f}{spread}")
                print(f"| {impl} | {absorb} | {measure} | " + " | ".join(cols)
                      + f" | {medians[-1] / medians[0]:.2f} |", flush=True)
            source = runs[args.ks[0]][0]["source"]
        print(f"(memory source: {source})")


if __name__ == "__main__":
    main()
