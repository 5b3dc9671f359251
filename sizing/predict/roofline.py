"""The layer roofline: a graph's exact costs on a device -> step time, time to train, memory per device,
the smallest feasible device count, energy; and latency, throughput and devices for inference.

Per layer (the roofline, Williams, Waterman and Patterson 2009, CACM 52(4)):
    compute time = FLOPs / (peak for the op class at the precision x achieved compute fraction)
    memory time  = bytes moved / (memory bandwidth x achieved memory fraction)
    layer time   = max(compute, memory, kernel issue); the larger of the first two names the layer's bound.
Matrix products (linear, convolutions, matmul, attention, recurrent cells: ops registered with ``matrix=True``) run at the device's
peak for the compute precision, tensor cores included (tf32, bf16, fp16, fp8, int8, fp64_tensor); every other op
runs at the vector peak (fp32, or fp64 for fp64), as tensor cores only multiply matrices. Backward does the layer's
backward FLOPs and moves twice its forward bytes (it reads the output gradient and the saved inputs and writes the
input and weight gradients); full recomputation (``recompute``) runs the forward pass once more.

Two causes below the peak, each off unless the calibration gives its figure (sizing/predict/setup.py ``Factors``):
a matrix product's output tiles run in waves over the device's multiprocessors (``wave_efficiency``), and no
kernel takes less than the time to issue it (``launch_bound``). A device with a measured GEMM sweep (a bench
profile) runs each matrix product at the rate its shape's smallest dimension reads from the sweep
(``gemm_rate``) instead of one peak. On a host that runs each call to its end (our Numba
executor on the CPU: ``Factors.launch_serial``), the calls' fixed cost, measured by ``sizing bench``, adds to the
layer's time instead: time = max(compute, memory) + kernels x call cost.

A CPU executor whose terms ``sizing bench`` measured (a profile's ``executors``: ours, PyTorch's) is predicted
from causes instead (``ExecutorTerms``): each layer by its class (``layer_class``: linear, conv, depthwise,
batchnorm, rownorm, elementwise, pool, attention) takes max(compute, memory) / the share of the roofline that
executor reached on the bench's layers of the class, read at the layer's shape (``shape_features``,
``read_share``: a product's m, n and inner dimension; a pass's size, so cache-resident layers run faster than
STREAM's arrays; attention's causal mask and dropout; a product's compute term is then taken at the one matrix
peak, not the numpy GEMM sweep, as the share carries the executor's own rate by shape; an elementwise op the bench
timed on its own, tanh, gelu, dropout, softmax, embedding, reads its own layers' share: ``efficiency_key``), plus
the class's fixed cost per layer (calls, allocations, dispatch, update; PyTorch's convolutions on its oneDNN path
that path's own: ``conv_path``); the step adds its own fixed cost
(optimizer loop) and its loss (the output's elements x the measured loss per element), carried on the last row.
Every constant is a bench measurement on layers of its own (sizing/hardware/bench/chains.py), none a zoo model's
time."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from operator import ge, mul, truediv
from typing import NamedTuple

from ..common.errors import SizingError
from ..model.graph import DTYPES
from ..model.ops import REGISTRY, numel
from ..model.ops.transformer import band
from ..hardware.devices import LAYER_CLASSES
from .setup import Factors, recompute_mode


BOUNDS = ("compute", "memory", "communication")


def _vector_precision(device, precision: str) -> str:
    """Elementwise, norm, pooling ops run on the vector units: fp64 for fp64, else fp32 (if the device has no
    fp32 peak, as a TPU, its only peak at the precision)."""
    if precision == "fp64":
        return "fp64"
    return "fp32" if "fp32" in device.peak_tflops else precision


def _matrix_precision(device, precision: str) -> str:
    """Matrix products run at the precision's peak, fp64 on tensor cores where the device has them."""
    return "fp64_tensor" if precision == "fp64" and "fp64_tensor" in device.peak_tflops else precision


def peaks(device, precision: str) -> tuple[int, int]:
    """(matrix peak, vector peak) in FLOP/s for ``precision`` on ``device``: matrix products at the precision's
    peak (fp64 on tensor cores where the device has them), other ops at the vector peak (``_vector_precision``).
    SizingError naming the precisions the device has when it lacks this one."""
    if precision not in device.peak_tflops:
        raise SizingError(f"device '{device.id}' ({device.name}) has no {precision} peak; it has "
                          f"{', '.join(device.precisions())}")
    return (device.peak_per_s(_matrix_precision(device, precision)),
            device.peak_per_s(_vector_precision(device, precision)))


class LayerTime(NamedTuple):
    """One layer on one device for one step (training: forward, backward and any recomputation; inference:
    forward). ``flops`` and ``bytes`` are this device's share (1 / tensor-parallel degree). Made by
    ``layer_times``; a named tuple, as immutable as a frozen dataclass and several times faster to make and read:
    the planner makes one per row per layout it predicts."""
    name: str
    op: str
    flops: int
    bytes: int
    compute_s: float
    memory_s: float
    launch_s: float                 # the kernels' issue time (``launch_bound``)
    launch_serial: bool             # the issue time adds to the work (Factors.launch_serial)
    seconds: float                  # max(compute, memory, issue); with launch_serial, max(compute, memory) + issue
    bound: str                      # 'compute' when compute_s >= memory_s, else 'memory'


_tuple = tuple.__new__          # a named tuple made without its keyword-taking __new__ (namedtuple's _make does this)


def itemsize(est) -> int:
    return DTYPES[est.settings["dtype"]]


def out_bytes(row, itemsize: int) -> int:
    """Bytes of every copy of the layer's output (ids tensors are never a layer's output)."""
    return numel(row.node.out.shape) * itemsize * row.node.repeat


def tp_split(row, width: int | None, split: frozenset = frozenset()) -> bool:
    """Whether tensor parallelism splits this row's work and kept tensors: matrix products (column- or
    row-parallel), rows whose output is split over the devices (``split``: ``tensor_parallel_roles``; the rotary
    embedding of a column-parallel q) and anything wider than the model (inside the tensor-parallel regions);
    model-width rows between them (norms, dropouts, residual adds) are replicated unless sequence parallelism
    splits them."""
    return REGISTRY[row.node.op].matrix or width is None or row.node.name in split or row.node.out.shape[-1] > width


def tensor_parallel_roles(est) -> tuple[frozenset, frozenset]:
    """(the row-parallel layers, the layers whose output is split over the devices) of ``est`` under tensor
    parallelism, as Megatron-LM lays a transformer out (Shoeybi et al. 2019, section 3: a sublayer's first
    products split their columns, its last splits its inner dimension and all-reduces its output). A ``linear``
    is row-parallel when its input is split: made, through ops without weights (activations, a product of two
    tensors, views, rotary embeddings, attention's scores, dropout), by a column-parallel linear, one whose input
    is whole (the graph input, or the output of a norm, an embedding, a residual add or a row-parallel layer). So
    q, k and v projections are column-parallel however narrow (grouped-query k and v), and the output and down
    projections row-parallel. Any other weighted product (a convolution; an op holding a whole sublayer:
    multihead_attention, mixture_of_experts, an LSTM) is row-parallel when its output is no wider than its
    input, else column-parallel. Graph nodes come in order (each after its inputs), so one pass decides."""
    def make():
        row_par, split = set(), set()
        for r in est.layers:
            n = r.node
            weighted = r.cost.params > 0
            if weighted and n.op == "linear":
                parallel = n.inputs[0] in split
            elif weighted and REGISTRY[n.op].matrix:
                parallel = numel(n.out.shape) <= max(numel(t.shape) for t in n.in_types)
            else:
                if not weighted and n.op != "add" and n.inputs and n.inputs[0] in split:
                    split.add(n.name)
                continue
            (row_par if parallel else split).add(n.name)
        return frozenset(row_par), frozenset(split)
    return est.derived("tensor_parallel_roles", make)


def expert_weight_bytes(row, itemsize: int) -> int:
    """Bytes of the experts' weights a mixture-of-experts row reads (all but the router), over its copies; 0 for
    other rows. Expert parallelism of degree e leaves 1 / e of them on each device."""
    if row.node.op != "mixture_of_experts":
        return 0
    n, e = row.node.kwargs["num_experts"], row.node.in_types[0].shape[-1]
    return (row.cost.params - n * e * row.node.repeat) * itemsize


ATTENTION = ("multihead_attention", "scaled_dot_product_attention")


def score_elements(row) -> int:
    """Scores of one copy of an attention row (either attention op: the projections inside multihead_attention,
    or q, k and v made by linears before scaled_dot_product_attention): batch x heads x queries x the keys each
    query scores (all T, or a sliding window's band: sizing/model/ops/transformer.py ``band``); 0 for other rows."""
    if row.node.op not in ATTENTION:
        return 0
    b, t = row.node.in_types[0].shape[:2]
    a = row.node.kwargs
    return b * a["num_heads"] * t * (band(a, t) if row.node.op == "scaled_dot_product_attention" else t)


def attention_core_flops(row) -> int:
    """Forward FLOPs of an attention row's score work (q k^T, softmax, probabilities @ v): the row's FLOPs less its
    projections (2 FLOPs per token per weight); all of an SDPA row's."""
    b, t = row.node.in_types[0].shape[:2]
    return max(0, row.cost.flops - 2 * b * t * row.cost.params)


def causal_skipped_flops(row, training: bool, fused: bool) -> int:
    """The score work a fused causal kernel does not do (a named framework term; the count stays dense, as
    docs/conventions.md states): FlashAttention skips the blocks above the diagonal, (T - 1) / 2T of the T x T
    pairs, forward and in the backward's products (twice the forward's: Dao 2023, FlashAttention-2, section 3)."""
    if not fused or row.node.op not in ATTENTION or not row.node.kwargs.get("causal"):
        return 0
    t = row.node.in_types[0].shape[1]
    return int(attention_core_flops(row) * (3 if training else 1) * (t - 1) / (2 * t))


def recompute_flops(row, recompute: str, grouped) -> int:
    """Forward FLOPs done again in backward: 'full' recomputes every row of the folded repeats; 'selective' the
    attention core of attention rows (scores, softmax, dropout, probabilities @ values: the row's FLOPs less its
    projections, 2 FLOPs per token per weight; Korthikanti et al. 2022)."""
    if recompute == "full":
        return row.cost.flops if row.node.name in grouped else 0
    if recompute == "selective" and row.node.op in ATTENTION:
        return attention_core_flops(row)
    return 0


def unfused_score_bytes(row, itemsize: int) -> int:
    """Memory traffic of the score matrices in an unfused attention's forward pass (a named framework term: the op
    counts a fused kernel, which keeps them on chip): Q K^T written and read by the softmax, the probabilities
    written and read by P V (4 x itemsize per score), and with dropout its mask written (1 byte) and the dropped
    probabilities written and read (2 x itemsize). Backward moves twice that."""
    per = 4 * itemsize + ((1 + 2 * itemsize) if row.node.kwargs.get("dropout") else 0)
    return score_elements(row) * per * row.node.repeat


# A GEMM's output is computed in thread-block tiles of 256 x 128 (the tile NVIDIA's guide uses for the A100: one
# such block per SM, so a wave is as many tiles as the device has SMs). NVIDIA, Matrix Multiplication Background
# User's Guide (DU-09799-001, 2023), sections 2.3 and 3.2.
WAVE_TILE = (256, 128)


def wave_efficiency(m: int, n: int, units: int, tile: tuple[int, int] = WAVE_TILE) -> float:
    """Share of the device a matrix product with an m x n output keeps busy when its tiles run in waves over
    ``units`` multiprocessors (wave quantization; NVIDIA's Matrix Multiplication Background guide, section 3.2):
    tiles = ceil(m / 256) ceil(n / 128), waves = ceil(tiles / units), efficiency = tiles / (waves x units). The
    last, partly filled wave takes a whole wave's time, so 109 tiles on 108 SMs take two waves (50.5%). Tile
    quantization (a dimension not a multiple of the tile) is left out: the libraries pick a tile that fits."""
    tiles = -(-m // tile[0]) * -(-n // tile[1])
    return tiles / (-(-tiles // units) * units)


class Product(NamedTuple):
    """The whole output, m x n, of one copy of a row's weighted matrix product (``product``), whether tensor
    parallelism splits the product's inner dimension (a row-parallel product: ``tensor_parallel_roles``), and the
    row's forward MACs and copies (its inner dimension is MACs / (copies x m x n))."""
    m: int
    n: int
    inner_split: bool
    macs: int
    repeat: int

    def output(self, k: int, context_parallel: int = 1) -> tuple[int, int]:
        """(m, n) on one device: tensor parallelism of degree k splits a column-parallel product's columns (a
        row-parallel one, ``inner_split``, splits its inner dimension and keeps its output whole); context
        parallelism splits the tokens."""
        return -(-self.m // context_parallel), self.n if self.inner_split else -(-self.n // k)

    @property
    def inner(self) -> int:
        """The whole inner dimension: the forward MACs per output element (a convolution's in-channels per group x
        taps: 9 for a 3 x 3 depthwise one)."""
        return max(1, self.macs // (self.repeat * self.m * self.n))

    def smallest(self, k: int, context_parallel: int = 1) -> int:
        """The smallest of (m, n, inner) on one device (``output``), the inner dimension split over the k devices
        in a row-parallel product: ceil(inner / k)."""
        m, n = self.output(k, context_parallel)
        return max(1, min(m, n, -(-self.inner // k) if self.inner_split else self.inner))


def product(row, inner_split: bool = False) -> Product | None:
    """The row's matrix product (``Product``; ``inner_split``: it is row-parallel), None for a row that is no
    weighted product: a linear's (tokens, out features); a convolution's (batch x output positions, out
    channels); an attention row's output projection (tokens, model width; row-parallel). Backward's products are
    taken at the forward's shape (a stated simplification: their tiles cover the same output and input sizes)."""
    op, out = row.node.op, row.node.out.shape
    if op == "linear" or op in ATTENTION:
        m, n = numel(out[:-1]), out[-1]
    elif op.startswith("conv") and len(out) >= 3:
        m, n = out[0] * numel(out[2:]), out[1]
    else:
        return None
    return Product(m, n, inner_split, row.cost.macs, row.node.repeat)


def smallest_dim(row, k: int, context_parallel: int = 1, inner_split: bool = False) -> int | None:
    """``Product.smallest`` of the row's product on one of k tensor-parallel devices; None for a row that is no
    weighted product."""
    p = product(row, inner_split)
    return None if p is None else p.smallest(k, context_parallel)


def gemm_rate(sweep, smallest: int) -> float:
    """FLOP/s of a product whose smallest dimension is ``smallest`` on a device whose GEMM sweep (rows of
    [m, k, n, GFLOP/s]: what ``sizing bench`` measured for each shape) is given: the rate, linear in
    log(smallest dimension) between the sweep's points (shapes sharing a smallest dimension averaged), held at
    the end points beyond them. A thin product (a batch-8 linear, a depthwise convolution's 9 taps) keeps its
    units' pipelines less busy than a square one: BLAS packs and streams the long dimensions for few multiply-adds
    on the short one."""
    by: dict[int, list] = {}
    for m, k, n, rate in sweep:
        by.setdefault(min(m, k, n), []).append(rate)
    points = sorted((d, sum(r) / len(r)) for d, r in by.items())
    if smallest <= points[0][0]:
        return points[0][1] * 1e9
    for (d0, r0), (d1, r1) in zip(points, points[1:]):
        if smallest <= d1:
            w = math.log(smallest / d0) / math.log(d1 / d0)
            return (r0 + w * (r1 - r0)) * 1e9
    return points[-1][1] * 1e9


def kernels(row, training: bool, recomputed: bool) -> int:
    """Kernels one step launches for the row, over its copies: one forward, in training two backward for a
    weighted matrix product (input and weight gradients) or one for another op with a backward pass, one more
    when recomputed; none for a row that moves and computes nothing (a view)."""
    c = row.cost
    if not (c.flops or c.bytes_read or c.bytes_written):
        return 0
    backward = (2 if REGISTRY[row.node.op].matrix and c.params else 1) if training and c.backward_flops else 0
    return row.node.repeat * (1 + backward + (1 if recomputed else 0))


def launch_bound(launched, launch_seconds: float) -> list[float]:
    """Seconds each row's kernels (``launched``, a column of ``kernels``) take at least: kernels x the time to
    issue one (the start-up term of Hockney's r_inf / n_1/2 model, t = t0 + n / r_inf, taken as a floor as kernels
    are issued ahead of the device: a kernel shorter than its issue time waits for the next one). The time to issue one
    kernel through the CUDA runtime is 4-6 us (measured on an RTX 5070 Ti, susun-blog.com 'pegainfer (3): From Launch Overhead to CUDA Graph')."""
    return list(map(mul, launched, repeat(launch_seconds)))


class RowWork(NamedTuple):
    """Every row's share of a step on one of t tensor-parallel devices, whatever the device (``row_work``), one
    column per field, row by row: ``flops`` and ``bytes`` as LayerTime holds them, ``run_flops`` the FLOPs each
    runs (a fused causal kernel's skipped blocks left out) per device, whether it is a matrix product, the
    product's smallest dimension and output shape (None for other rows) and the kernels it launches. Columns, so
    that ``layer_times`` does each device's arithmetic a column at a time."""
    names: tuple[str, ...]
    ops: tuple[str, ...]
    flops: tuple[int, ...]
    bytes: tuple[int, ...]
    bytes_float: tuple[float, ...]          # the same as floats (x / bandwidth rounds as the int's would)
    run_flops: tuple[float, ...]
    matrix: tuple[bool, ...]
    thin: tuple[int | None, ...]
    shape: tuple[tuple[int, int] | None, ...]
    kernels: tuple[int, ...]


def row_work(est, t: int, training: bool, recompute: str, sequence_parallel: bool, width: int | None, grouped,
             fused_attention: bool, expert_parallel: int, context_parallel: int) -> RowWork:
    """The device-independent part of ``layer_times`` (its docstring), computed once per estimate and arguments:
    each row's work over the whole step (``_row_totals``) split over the tensor- and context-parallel ranks."""
    def make():
        out = []
        for name, op, flops, nbytes, run, matrix, split, launched, gemm in _row_totals(
                est, training, recompute, width, grouped, fused_attention, expert_parallel, context_parallel):
            k = t if sequence_parallel or split else 1
            split_bytes = -(-nbytes // k)
            out.append((name, op, -(-flops // (k * context_parallel)), split_bytes, float(split_bytes),
                        run / (k * context_parallel), matrix,
                        gemm.smallest(k, context_parallel) if gemm else None,
                        gemm.output(k, context_parallel) if gemm else None, launched))
        return RowWork(*(tuple(column) for column in zip(*out))) if out else RowWork(*[()] * len(RowWork._fields))
    return est.derived(("row_work", t, training, recompute, sequence_parallel, width, grouped, fused_attention,
                        expert_parallel, context_parallel), make)


def _row_totals(est, training: bool, recompute: str, width: int | None, grouped, fused_attention: bool,
                expert_parallel: int, context_parallel: int) -> tuple[tuple, ...]:
    """Per row, whatever the tensor-parallel degree (computed once per estimate and arguments): its name and op,
    the FLOPs and bytes of its step (forward, backward, recomputation), the FLOPs it runs (less a fused causal
    kernel's skipped blocks), whether it is a matrix product, whether tensor parallelism splits it (``tp_split``),
    the kernels it launches and its weighted product (``product``, None for other rows)."""
    def make():
        size = itemsize(est)
        row_par, split = tensor_parallel_roles(est)
        out = []
        for r in est.layers:
            c = r.cost
            fwd_bytes = c.bytes_read + c.bytes_written + (0 if fused_attention else unfused_score_bytes(r, size))
            fwd_bytes -= expert_weight_bytes(r, size) * (expert_parallel - 1) // expert_parallel
            if context_parallel > 1:
                weights = min(fwd_bytes, c.params * size)
                fwd_bytes = weights + (fwd_bytes - weights) // context_parallel
            flops, nbytes = c.flops, fwd_bytes
            again = recompute_flops(r, recompute, grouped) if training else 0
            if training:
                flops += c.backward_flops + again
                nbytes += (2 * fwd_bytes if c.backward_flops else 0) + (fwd_bytes if again else 0)
            run = flops - causal_skipped_flops(r, training, fused_attention)
            matrix = REGISTRY[r.node.op].matrix
            out.append((r.node.name, r.node.op, flops, nbytes, run, matrix, tp_split(r, width, split),
                        kernels(r, training, bool(again)), product(r, r.node.name in row_par) if matrix else None))
        return tuple(out)
    return est.derived(("row_totals", training, recompute, width, grouped, fused_attention, expert_parallel,
                        context_parallel), make)


EXECUTOR_NAMES = {"sizing": "our Numba executor (the step `sizing check` times)", "pytorch": "PyTorch's eager step"}


def layer_class(row) -> str:
    """The bench's layer class of a row (sizing/hardware/devices.py LAYER_CLASSES): what fixed cost and share of
    the roofline an executor has for it. Ops of no class of their own (activations, merges, dropout, softmax,
    embeddings) are elementwise: a pass over their tensors."""
    op = row.node.op
    if op in ("linear", "matmul"):
        return "linear"
    if op.startswith("conv"):
        groups = row.node.kwargs.get("groups", 1)
        return "depthwise" if groups > 1 and groups == row.node.in_types[0].shape[1] else "conv"
    if op.startswith("batchnorm"):
        return "batchnorm"
    if op in ("layernorm", "rmsnorm", "groupnorm"):
        return "rownorm"
    if "pool" in op:
        return "pool"
    if op in ATTENTION:
        return "attention"
    return "elementwise"


def efficiency_key(row) -> str:
    """Which measured layers give a row its share of the roofline (``executor_terms``): an elementwise row's op and
    its string arguments ('gelu/tanh', 'dropout'), when the bench timed that op on its own, else its class
    (``layer_class``); ``executor_seconds`` falls back to the class for an op the bench did not time."""
    cls = layer_class(row)
    if cls != "elementwise":
        return cls
    return "/".join([row.node.op] + [v for _, v in sorted(row.node.kwargs.items()) if isinstance(v, str)])


def shape_features(row) -> tuple:
    """Where a row sits among the bench's measured layers of its class (``executor_terms``), in log2 units: a
    weighted product's (m, n, inner) as ``smallest_dim`` takes them (a linear's tokens, out and in features; a
    convolution's batch x output positions, out channels, in channels per group x taps); attention's causal
    mask and dropout (8 each: another code path, farther than any size) and its positions; any other row's output
    elements per copy."""
    op, out = row.node.op, row.node.out.shape
    if op in ATTENTION:
        return (8.0 * bool(row.node.kwargs.get("causal")), 8.0 * bool(row.node.kwargs.get("dropout")),
                math.log2(max(1, row.node.in_types[0].shape[1])))
    if REGISTRY[op].matrix and row.cost.macs:
        p = product(row) or Product(numel(out[:-1]), out[-1], False, row.cost.macs, row.node.repeat)
        return math.log2(max(1, p.m)), math.log2(max(1, p.n)), math.log2(p.inner)
    return (math.log2(max(1, numel(out))),)


def read_share(points, features: tuple) -> float:
    """The share of the roofline at ``features`` from the class's measured ``points`` ((features, share), ...):
    inverse-distance weighting of log share (Shepard 1968, power 2) in the features' log2 space, a measured layer's
    own share at its own features; 1 with no points."""
    num = den = 0.0
    for where, share in points:
        if len(where) != len(features):
            continue
        d2 = sum((a - b) ** 2 for a, b in zip(where, features))
        if d2 == 0:
            return share
        num, den = num + math.log(share) / d2, den + 1 / d2
    return math.exp(num / den) if den else 1.0


@dataclass(frozen=True)
class ExecutorTerms:
    """A CPU executor's measured terms (seconds; shares of the roofline), by layer class: ``efficiency`` maps a
    class to its measured layers' (features, share) points (``read_share``)."""
    name: str
    version: str | None
    step_s: float
    layer_s: dict                   # per class (and per other code path: conv_onednn) its fixed cost per layer
    efficiency: dict
    loss_s: float = 0.0             # the loss per element of the graph's output (measured as a cross-entropy)
    threads: int | None = None      # the threads the bench ran it on (None: a profile made before it said)

    def describe(self) -> str:
        def shares(c):
            if c not in LAYER_CLASSES:
                return "its own path's fixed cost"
            got = sorted(s for _, s in self.efficiency.get(c, ()))
            return (f"{got[0]:.0%}" if len(got) == 1 else f"{got[0]:.0%}-{got[-1]:.0%} over {len(got)} shapes"
                    ) if got else "100%"
        classes = ", ".join(f"{c} {self.layer_s[c] * 1e6:.3g} us / {shares(c)}" for c in self.layer_s)
        return (f"figures for {EXECUTOR_NAMES[self.name]}{f' ({self.version})' if self.version else ''}: per layer "
                f"class its fixed cost per layer in a step and the share of the roofline it reached on the bench's "
                f"layers of the class, read by shape ({classes}); {self.step_s * 1e6:.3g} us per step and "
                f"{self.loss_s * 1e9:.3g} ns per output element for the loss (all measured by `sizing bench`)")


def chain_roofline(est, device, precision: str) -> float:
    """Seconds of the roofline an executor's shares are taken against (max(compute, memory) per row, no fixed
    costs) of a training step of ``est``: an executor's terms with no figures (every share 1, no fixed cost)."""
    bare = Factors(1.0, 1.0, 1.0, 1.0, 0.0, 1.0, executor=ExecutorTerms("sizing", None, 0.0, {}, {}))
    return sum(max(lt.compute_s, lt.memory_s) for lt in layer_times(est, device, precision, bare))


def executor_terms(device, precision: str, name: str) -> ExecutorTerms:
    """The terms of executor ``name`` from ``device.executors`` (sizing bench): per class, the fixed cost per layer
    (``layer_us``) and, for each measured layer of the class (its wide one, ``wide_us``, and its other shapes,
    ``shapes_us``: sizing/hardware/bench/chains.py), its features (``shape_features``) and share of the roofline:
    the plain roofline's growth between the two chains the bench timed, per layer (this module's roofline on
    ``device``), / the measured work of one layer (for PyTorch's convolutions on its oneDNN path, ``conv_path``,
    less that path's fixed cost beyond the tiny native one: the row pays it as its fixed cost). A share may pass 1:
    a layer whose tensors stay in cache moves them faster than STREAM's memory-sized arrays."""
    from ..hardware.bench.chains import LOSS_ELEMENTS, SHAPES, own_op, slope_graphs

    rec = device.executors[name]
    layer_us, threads = rec["layer_us"], rec.get("threads")
    efficiency: dict = {}
    measured = [(cls, True, us) for cls, us in rec.get("wide_us", {}).items()] + [
        (SHAPES[s].cls, s, us) for s, us in rec.get("shapes_us", {}).items()]
    for cls, wide, us in measured:
        (short, long), (n1, n2) = slope_graphs(cls, wide)
        row = next(r for r in long.layers if r.node.name == "l0")
        if name == "pytorch" and cls == "conv":     # a layer on the oneDNN path pays that path's fixed cost, not
            path = conv_path(row, threads)          # the tiny (native) one its work was taken less
            us -= layer_us.get(path, layer_us.get(cls, 0.0)) - layer_us.get(cls, 0.0)
            if us <= 0:                             # noise: no work left beside the path's fixed cost
                continue
        grown = (chain_roofline(long, device, precision) - chain_roofline(short, device, precision)) / (n2 - n1)
        key = efficiency_key(row) if wide is not True and own_op(wide) else cls
        efficiency.setdefault(key, []).append((shape_features(row), grown / (us * 1e-6)))
    return ExecutorTerms(name, rec.get("version"), rec.get("step_us", 0.0) * 1e-6,
                         {c: us * 1e-6 for c, us in rec["layer_us"].items()},
                         {c: tuple(p) for c, p in efficiency.items()}, rec.get("loss_us", 0.0) * 1e-6 / LOSS_ELEMENTS,
                         rec.get("threads"))


def conv_path(row, threads: int | None) -> str:
    """The code path PyTorch's fp32 CPU convolution takes for ``row`` (a named framework term): 'conv_onednn'
    when ConvParams::use_mkldnn holds (pytorch/pytorch aten/src/ATen/native/Convolution.cpp), (strided or dilated
    or batch >= 16 or a kernel other than 1 x 1 or more than one thread) and (grouped or a kernel over 3 x 3 both
    ways or batch > 1 or more than 20480 input elements); else 'conv', its native kernels (what the bench's tiny
    batch-1 convolutions run). ``threads`` None (a profile that does not say) is taken as more than one."""
    a, (n, c, *space) = row.node.kwargs, row.node.in_types[0].shape
    kernel, stride, dilation = (tuple(v) if isinstance(v, (tuple, list)) else (v,) * len(space)
                                for v in (a["kernel_size"], a["stride"], a["dilation"]))
    first = (any(s > 1 for s in stride) or any(d > 1 for d in dilation) or n >= 16 or any(k != 1 for k in kernel)
             or threads is None or threads > 1)
    second = a.get("groups", 1) > 1 or all(k > 3 for k in kernel) or n > 1 or numel(row.node.in_types[0].shape) > 20480
    return "conv_onednn" if first and second else "conv"


def executor_seconds(row, terms: ExecutorTerms, launched: int) -> tuple[float, float]:
    """(share of the roofline, fixed seconds) of the row for ``terms``: the share read at its features from its
    class's measured layers (``read_share``); the class's cost per layer in a training step x its copies, scaled by
    the kernels this pass runs (``launched``, ``kernels``) against a training step's. PyTorch's convolutions on its
    oneDNN path (``conv_path``) take that path's measured cost per layer (chains.py 'conv_onednn'), where the
    profile has it, instead of the native kernels' that the tiny chain times."""
    cls = layer_class(row)
    per_step = kernels(row, True, False)
    path = conv_path(row, terms.threads) if terms.name == "pytorch" and cls == "conv" else cls
    fixed = terms.layer_s.get(path, terms.layer_s.get(cls, terms.layer_s.get("elementwise", 0.0))) * row.node.repeat
    fixed *= launched / per_step if per_step else 0.0
    points = terms.efficiency.get(efficiency_key(row)) or terms.efficiency.get(cls, ())
    return read_share(points, shape_features(row)), fixed


@dataclass(frozen=True, eq=False)
class LayerColumns:
    """``layer_times``' results by column: the rows' work (``row_work``), compute, memory and issue seconds, and
    their ``seconds`` and whether each is compute bound (what the step's sums read: sizing/predict/training.py
    ``step_terms``); the LayerTime rows made when first asked for (the planner sums far more layouts than it
    shows)."""
    work: RowWork
    compute: list[float]
    memory: list[float]
    issue: list[float]
    serial: bool
    seconds: list[float]
    compute_bound: list[bool]

    @cached_property
    def rows(self) -> tuple[LayerTime, ...]:
        w = self.work
        return tuple(map(_tuple, repeat(LayerTime), zip(
            w.names, w.ops, w.flops, w.bytes, self.compute, self.memory, self.issue, repeat(self.serial),
            self.seconds, ["compute" if b else "memory" for b in self.compute_bound])))


def layer_times(est, device, precision: str, factors: Factors, t: int = 1, training: bool = True,
                recompute: str | bool = "none", sequence_parallel: bool = True, width: int | None = None,
                grouped=None, fused_attention: bool = True, expert_parallel: int = 1,
                context_parallel: int = 1) -> tuple[LayerTime, ...]:
    """Per-layer roofline on one of ``t`` tensor-parallel devices (module docstring). Without sequence parallelism
    the model-width rows between tensor-parallel regions run whole on every rank (``width``: the model width;
    sizing/predict/fit.py ``tp_split``). ``grouped``: the rows inside folded repeats (full recomputation redoes
    those; None: every row). Unfused attention also moves its score matrices (``unfused_score_bytes``); with expert
    parallelism a mixture-of-experts row reads only its device's experts; with context parallelism of degree cp
    each device does 1 / cp of every row's work and moves 1 / cp of its activations, but reads all its weights."""
    return layer_columns(est, device, precision, factors, t, training, recompute, sequence_parallel, width, grouped,
                         fused_attention, expert_parallel, context_parallel).rows


def layer_columns(est, device, precision: str, factors: Factors, t: int = 1, training: bool = True,
                  recompute: str | bool = "none", sequence_parallel: bool = True, width: int | None = None,
                  grouped=None, fused_attention: bool = True, expert_parallel: int = 1,
                  context_parallel: int = 1) -> LayerColumns:
    """``layer_times`` (its arguments), with the rows' seconds and bounds as columns. Each device's arithmetic runs
    a column at a time over ``row_work``'s device-independent columns (the planner asks for every candidate
    device): the same operations in the same order per row, so the same floats as one row at a time."""
    recompute = recompute_mode(recompute)
    grouped = frozenset(r.node.name for r in est.layers) if grouped is None else grouped
    mat, vec = peaks(device, precision)
    sweep = (getattr(device, "gemm_sweep", None) or {}).get(_matrix_precision(device, precision))
    bw = device.memory_bw_bytes_per_s * factors.memory_fraction
    units, launch, fraction, serial = (factors.compute_units, factors.launch_seconds, factors.compute_fraction,
                                       factors.launch_serial)
    executor = factors.executor
    work = row_work(est, t, training, recompute, sequence_parallel, width, grouped, fused_attention,
                    expert_parallel, context_parallel)
    matrix_rate, vector_rate = mat * fraction, vec * fraction
    rate = [matrix_rate if matrix else vector_rate for matrix in work.matrix]         # FLOP/s each row runs at
    if sweep and not executor:      # an executor's shares carry its rate by shape (read_share): products at the peak
        rate = [gemm_rate(sweep, thin) * fraction if thin else r for r, thin in zip(rate, work.thin)]
    if units:                       # a row of no product keeps its rate (x 1.0 is the same float)
        rate = [r * wave_efficiency(*shape, units) if shape else r for r, shape in zip(rate, work.shape)]
    compute = list(map(truediv, work.run_flops, rate))
    memory = [nbytes / bw for nbytes in work.bytes_float]
    issue = launch_bound(work.kernels, launch)
    if executor:
        for i, (r, launched) in enumerate(zip(est.layers, work.kernels)):
            share, issue[i] = executor_seconds(r, executor, launched)
            compute[i], memory[i] = compute[i] / share, memory[i] / share
        if issue:                   # the step's own fixed cost (optimizer loop) and its loss on the last row
            issue[-1] += executor.step_s + executor.loss_s * numel(est.graph.node(est.graph.output).out.shape)
    seconds = ([(c if c >= m else m) + i for c, m, i in zip(compute, memory, issue)] if serial else
               [(c if c >= i else i) if c >= m else (m if m >= i else i) for c, m, i in zip(compute, memory, issue)])
    return LayerColumns(work, compute, memory, issue, serial, seconds, list(map(ge, compute, memory)))


def require_work(est) -> None:
    """SizingError, one line, for a graph with nothing to time: no FLOPs and no bytes moved (only views)."""
    t = est.totals
    if t.flops + t.backward_flops == 0 and t.bytes_read + t.bytes_written == 0:
        raise SizingError(f"{est.graph.name}: no work to time: its layers do no FLOPs and move no bytes (views "
                          f"only); add a layer that computes")


def backward_share(est) -> float:
    """Share of the training FLOPs that backward does (to size the window gradient communication overlaps)."""
    t = est.totals
    return t.backward_flops / max(1, t.flops + t.backward_flops)


def row_parallel(est, row) -> bool:
    """A layer tensor parallelism all-reduces after (``tensor_parallel_roles``: attention's output projection, an
    MLP's down projection)."""
    return row.node.name in tensor_parallel_roles(est)[0]


def row_parallel_bytes(est) -> int:
    """Output bytes of the row-parallel layers, over their copies."""
    size = itemsize(est)
    return sum(out_bytes(r, size) for r in est.layers if row_parallel(est, r))


def facility_kw(tdp_w: float | None, count: int, pue: float) -> float | None:
    """Facility power of ``count`` devices at their TDP: TDP x count x PUE / 1000 (kW); None without a TDP."""
    return None if tdp_w is None else tdp_w * count * pue / 1000
