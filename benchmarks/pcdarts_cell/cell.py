"""PC-DARTS' search cell in PyTorch, timed forward+backward on the CPU.

Written from the paper (Xu et al., "PC-DARTS: Partial Channel Connections for Memory-Efficient
Architecture Search", ICLR 2020) and DARTS (Liu et al., ICLR 2019), for
``benchmarks/search_cell_vs_pcdarts.py``; it runs in its own environment (``.venv-pcdarts``, made by
``benchmarks/pcdarts_cell/setup.sh``), never in the package's.

The cell (a normal cell, stride 1):

* two inputs ``s0`` (``--c-prev-prev`` channels) and ``s1`` (``--c-prev``), each preprocessed by
  ReLU, 1x1 convolution to ``C`` channels and BatchNorm;
* four intermediate nodes; node ``j`` sums an edge from every earlier state (14 edges);
* each edge a partial-channel mixed operation: the first ``C/K`` channels go through the softmax
  (alpha) weighted sum of the eight DARTS operations, the other channels bypass it; the two parts
  are concatenated and the channels shuffled (``K`` groups);
* edge normalisation: each edge's output is weighted by beta, a softmax over the edges entering
  the same node;
* the output is the concatenation of the four nodes (``4 C`` channels).

Operations (all BatchNorms ``affine=False``, as in the search phase): ``none`` (zero),
``max_pool_3x3`` and ``avg_pool_3x3`` (each followed by BatchNorm), ``skip_connect`` (identity),
``sep_conv_3x3`` / ``sep_conv_5x5`` (twice ReLU, depthwise conv, 1x1 conv, BatchNorm) and
``dil_conv_3x3`` / ``dil_conv_5x5`` (ReLU, depthwise conv with dilation 2, 1x1 conv, BatchNorm).

One timed step: the alpha softmax and the beta normalisation, the cell's forward pass in
training mode, the loss ``mean(out ** 2)`` and its backward pass (gradients for the cell's
weights, alpha and beta). Usage::

    .venv-pcdarts/bin/python benchmarks/pcdarts_cell/cell.py [--batch 8] [--size 64] [--C 16] [--K 4]
        [--runs 5] [--warmup 2] [--threads 2] [--memory-format nchw|channels_last]

prints one JSON object: the median wall seconds of ``--runs`` steps after ``--warmup`` untimed
ones, every time, the CPU seconds of each (user + system, all threads), the thread count,
PyTorch's version and the parameter count. ``--serve`` builds the cell once, then reads lines
``RUNS`` from standard input and answers each with one JSON line of ``RUNS`` step times, wall and
CPU (``benchmarks/search_cell_vs_pcdarts.py`` drives it so, in turns with the TensorFlow cell).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


class Zero(nn.Module):
    """The ``none`` operation: zeros of the input's shape (stride 1)."""

    def forward(self, x):
        return x * 0.0


class ReluConvBn(nn.Module):
    """ReLU, convolution, BatchNorm (the cell's input preprocessing, 1x1)."""

    def __init__(self, c_in, c_out, kernel=1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        return self.bn(self.conv(F.relu(x)))


class DepthwisePointwise(nn.Module):
    """ReLU, depthwise ``kernel x kernel`` convolution (``dilation``), 1x1 convolution, BatchNorm."""

    def __init__(self, channels, kernel, dilation=1):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.depthwise = nn.Conv2d(channels, channels, kernel, padding=pad, dilation=dilation,
                                   groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels, affine=False)

    def forward(self, x):
        return self.bn(self.pointwise(self.depthwise(F.relu(x))))


class SepConv(nn.Module):
    """DARTS' separable convolution: the depthwise-pointwise block twice."""

    def __init__(self, channels, kernel):
        super().__init__()
        self.first = DepthwisePointwise(channels, kernel)
        self.second = DepthwisePointwise(channels, kernel)

    def forward(self, x):
        return self.second(self.first(x))


class Pool(nn.Module):
    """3x3 max or average pooling (stride 1, average without the padding) and BatchNorm."""

    def __init__(self, channels, kind):
        super().__init__()
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.bn = nn.BatchNorm2d(channels, affine=False)

    def forward(self, x):
        return self.bn(self.pool(x))


def make_operation(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name.endswith("pool_3x3"):
        return Pool(channels, name[:3])
    kernel = int(name[-1])
    if name.startswith("sep_conv"):
        return SepConv(channels, kernel)
    if name.startswith("dil_conv"):
        return DepthwisePointwise(channels, kernel, dilation=2)
    raise ValueError(f"unknown operation {name!r}")


def channel_shuffle(x, groups: int):
    """Interleave the channels of ``groups`` equal groups (ShuffleNet's shuffle, NCHW)."""
    if groups == 1:
        return x
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class PartialMixedOp(nn.Module):
    """One edge: the alpha-weighted operations on the first ``C/K`` channels, the rest passed
    by, then the channel shuffle."""

    def __init__(self, channels: int, K: int):
        super().__init__()
        if channels % K:
            raise ValueError(f"C={channels} is not a multiple of K={K}")
        self.K = K
        self.part = channels // K
        self.ops = nn.ModuleList(make_operation(name, self.part) for name in PRIMITIVES)
        self.channels_last = False  # keep the NHWC order through slicing and shuffling

    def forward(self, x, weights):
        selected, bypass = x[:, : self.part], x[:, self.part:]
        if self.channels_last:
            selected = selected.contiguous(memory_format=torch.channels_last)
        mixed = sum(w * op(selected) for w, op in zip(weights, self.ops))
        out = channel_shuffle(torch.cat([mixed, bypass], dim=1), self.K)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out


class PCDartsSearchCell(nn.Module):
    """The normal search cell of PC-DARTS: 2 inputs, ``steps`` nodes, output ``steps * C``."""

    def __init__(self, c_prev_prev: int, c_prev: int, C: int, K: int = 4, steps: int = 4):
        super().__init__()
        self.steps = steps
        self.pre0 = ReluConvBn(c_prev_prev, C)
        self.pre1 = ReluConvBn(c_prev, C)
        self.edges = nn.ModuleList(
            PartialMixedOp(C, K) for node in range(steps) for _ in range(2 + node))

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def edge_weights(self, beta):
        """beta normalised per node: a softmax over the edges entering the same node."""
        parts, start = [], 0
        for node in range(self.steps):
            n = 2 + node
            parts.append(F.softmax(beta[start:start + n], dim=-1))
            start += n
        return torch.cat(parts)

    def forward(self, s0, s1, alpha, beta):
        op_weights = F.softmax(alpha, dim=-1)
        edge_weights = self.edge_weights(beta)
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = sum(edge_weights[offset + i] * self.edges[offset + i](h, op_weights[offset + i])
                       for i, h in enumerate(states))
            offset += len(states)
            states.append(node)
        return torch.cat(states[2:], dim=1)


def make_step(batch=8, size=64, c_prev_prev=64, c_prev=64, C=16, K=4, seed=0,
              memory_format="nchw"):
    """A zero-argument callable running one forward+backward step, and the parameter count.

    ``memory_format``: ``"nchw"`` (PyTorch's default, as PC-DARTS runs) or ``"channels_last"``
    (inputs and weights in NHWC order; PyTorch's CPU convolutions, the depthwise ones above all,
    are faster so)."""
    torch.manual_seed(seed)
    cell = PCDartsSearchCell(c_prev_prev, c_prev, C, K).train()
    alpha = (1e-3 * torch.randn(cell.num_edges, len(PRIMITIVES))).requires_grad_()
    beta = (1e-3 * torch.randn(cell.num_edges)).requires_grad_()
    s0 = torch.randn(batch, c_prev_prev, size, size)
    s1 = torch.randn(batch, c_prev, size, size)
    if memory_format == "channels_last":
        cell = cell.to(memory_format=torch.channels_last)
        for edge in cell.edges:
            edge.channels_last = True
        s0 = s0.contiguous(memory_format=torch.channels_last)
        s1 = s1.contiguous(memory_format=torch.channels_last)
    elif memory_format != "nchw":
        raise ValueError(f"memory_format must be nchw or channels_last, got {memory_format!r}")
    params = list(cell.parameters()) + [alpha, beta]

    def step():
        for p in params:
            p.grad = None
        loss = cell(s0, s1, alpha, beta).pow(2).mean()
        loss.backward()
        return float(loss.detach())

    return step, sum(p.numel() for p in cell.parameters())


def timed(step, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (user + system of every thread of the process) of ``runs`` steps."""
    times, cpu = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return times, cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--c-prev-prev", type=int, default=64)
    parser.add_argument("--c-prev", type=int, default=64)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw")
    parser.add_argument("--serve", action="store_true",
                        help="answer lines RUNS on standard input with JSON step times")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    step, n_params = make_step(args.batch, args.size, args.c_prev_prev, args.c_prev, args.C, args.K,
                                memory_format=args.memory_format)
    for _ in range(args.warmup):
        step()
    info = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "parameters": n_params,
            "memory_format": args.memory_format,
            "shape": {"batch": args.batch, "size": args.size, "inputs": [args.c_prev_prev, args.c_prev],
                      "C": args.C, "K": args.K, "out_channels": 4 * args.C}}
    if args.serve:
        print(json.dumps({"ready": True, **info}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            times, cpu = timed(step, int(line))
            print(json.dumps({"times": times, "cpu": cpu}), flush=True)
        return
    times, cpu = timed(step, args.runs)
    print(json.dumps({"median_s": statistics.median(times), "times": times,
                      "median_cpu_s": statistics.median(cpu), "cpu": cpu, "runs": args.runs,
                      "warmup": args.warmup, **info}))


if __name__ == "__main__":
    main()
