"""Every op of the registry, each against a route independent of its formula.

Shapes: PyTorch's output-size rules (torch.nn docs), enumerated window by window, and facts read off
torch 2.13.0 (CPU) once by a one-off script outside this suite (the suite never imports torch).
Counts: brute-force loops over every output position and every product (convolutions, the transposed
convolution in scatter form, pools, adaptive bins), an explicit loop over time steps (LSTM, GRU), per-head
matrix shapes (attention), and a counting float that evaluates PyTorch's formulas and counts each operation
it does (activations, softmax, norms, recurrent cells); every backward formula it counts is also checked to
be the real derivative, by central differences. Params: PyTorch's documented parameter shapes.
Graph rules: the first layer, frozen layers, fan-out accumulation, broadcasting.
"""
from __future__ import annotations

import itertools
import math

import pytest
import yaml

from sizing.model.counting import count, weight_shapes
from sizing.common.errors import SizingError
from sizing.model.graph import build
from sizing.model.ops import REGISTRY
from sizing.common.yamlsafe import loads

COVERED: set[str] = set()


def covers(*ops):
    """Mark a test as covering ``ops``; test_every_registered_op_is_covered checks the union is the registry."""
    COVERED.update(ops)
    return lambda fn: fn


# ---------------------------------------------------------------- building graphs through the public path

def spec_rows(input, layers, batch=2, dtype="fp32"):
    """{layer name: LayerCost} of a spec given as data: dumped to YAML, loaded, built and counted."""
    spec = {"input": input, "defaults": {"batch": batch, "dtype": dtype}, "layers": layers}
    data, lines = loads(yaml.safe_dump(spec, sort_keys=False), "t.yaml")
    rows, _ = count(build(data, lines, "t.yaml"))
    return {r.node.name: r for r in rows}


def one(op, input, hidden=False, batch=2, **args):
    """The row of one ``op`` layer named 'x': the model's first layer, or (``hidden``) after a layernorm, so that
    its input needs a gradient."""
    layers = [{"op": "layernorm", "name": "pre"}] if hidden else []
    return spec_rows(input, layers + [{"op": op, "name": "x", **args}], batch)["x"]


def shape_of(row):
    return row.node.out.shape


def params_of(row):
    return {name: tuple(s) for name, s in weight_shapes(row.node).items()}


# ---------------------------------------------------------------- a float that counts its operations

class Tally:
    def __init__(self):
        self.n = 0


class F:
    """A float that counts, in ``tally``, the FLOPs done with it by the conventions (docs/conventions.md):
    each + - * /, negation, comparison and transcendental call is 1. Constants (plain floats) are free."""
    __slots__ = ("v", "t")

    def __init__(self, v, t):
        self.v, self.t = v, t

    def _new(self, v):
        self.t.n += 1
        return F(v, self.t)

    def __add__(self, o):
        return self._new(self.v + _v(o))

    __radd__ = __add__

    def __sub__(self, o):
        return self._new(self.v - _v(o))

    def __rsub__(self, o):
        return self._new(_v(o) - self.v)

    def __mul__(self, o):
        return self._new(self.v * _v(o))

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self._new(self.v / _v(o))

    def __rtruediv__(self, o):
        return self._new(_v(o) / self.v)

    def __neg__(self):
        return self._new(-self.v)

    def __gt__(self, o):
        self.t.n += 1
        return self.v > _v(o)

    def __lt__(self, o):
        self.t.n += 1
        return self.v < _v(o)


def _v(x):
    return x.v if isinstance(x, F) else x


def _call(fn):
    return lambda x: x._new(fn(x.v))


exp, tanh, erf, rsqrt = _call(math.exp), _call(math.tanh), _call(math.erf), _call(lambda v: v ** -0.5)


def fmax(a, b):
    return a if a > b else F(_v(b), a.t)


def fmin(a, b):
    return a if a < b else F(_v(b), a.t)


def where(cond_ops, g):
    """Select g where a condition holds (the comparisons were counted by the caller), else 0."""
    return g if cond_ops else F(0.0, g.t)


def counted(fn, *values):
    """(number of FLOPs, plain result) of ``fn`` applied to ``values`` as counting floats."""
    t = Tally()
    out = fn(*[F(v, t) for v in values])
    return t.n, _v(out) if not isinstance(out, list) else [_v(o) for o in out]


def total(values):
    """A reduction of n terms, from 0: n adds (the conventions' rule)."""
    s = 0.0
    for v in values:
        s = s + v
    return s


def derivative(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


# ---------------------------------------------------------------- activations, softmax, dropout

SQRT2, C_TANH, A_TANH = math.sqrt(2.0), math.sqrt(2.0 / math.pi), 0.044715
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _sigmoid(x):
    return 1.0 / (1.0 + exp(-x))


def _gelu_tanh_grad(x, g):
    # u = x (c + c a x^2), t = tanh(u); y' = (1 + t) (1/2 + x (1 - t) (c/2 + 3 c a x^2 / 2)), x^2 computed once
    x2 = x * x
    t = tanh(x * (C_TANH + C_TANH * A_TANH * x2))
    return g * ((1.0 + t) * (0.5 + x * (1.0 - t) * (0.5 * C_TANH + 1.5 * C_TANH * A_TANH * x2)))


# (op, approximate): (forward y(x) from PyTorch's docs, backward dx(x, y, g) from the derivation in our docs)
ACTIVATION_FORMULAS = {
    ("relu", None): (lambda x: fmax(x, 0.0), lambda x, y, g: where(y > 0.0, g)),
    ("relu6", None): (lambda x: fmin(fmax(x, 0.0), 6.0), lambda x, y, g: where((y > 0.0) & (y < 6.0), g)),
    ("sigmoid", None): (_sigmoid, lambda x, y, g: g * y * (1.0 - y)),
    ("tanh", None): (tanh, lambda x, y, g: g * (1.0 - y * y)),
    ("silu", None): (lambda x: x * _sigmoid(x),
                   lambda x, y, g: (lambda s: g * s * (1.0 + x * (1.0 - s)))(_sigmoid(x))),
    ("gelu", "none"): (lambda x: 0.5 * x * (1.0 + erf(x / SQRT2)),
                          lambda x, y, g: g * (0.5 * (1.0 + erf(x / SQRT2))
                                               + x * (exp(-0.5 * (x * x)) * INV_SQRT_2PI))),
    ("gelu", "tanh"): (lambda x: 0.5 * x * (1.0 + tanh(C_TANH * (x + A_TANH * (x * x * x)))),
                          lambda x, y, g: _gelu_tanh_grad(x, g)),
}


@covers("relu", "relu6", "sigmoid", "tanh", "silu", "gelu")
@pytest.mark.parametrize("op,approx", list(ACTIVATION_FORMULAS))
def test_activation_counts_equal_counted_formulas(op, approx):
    fwd, bwd = ACTIVATION_FORMULAS[(op, approx)]
    counts = set()
    for x in (-1.3, 0.4, 2.1, 7.5):          # every branch of relu6; the derivative is checked at each point
        f_count, y = counted(fwd, x)
        b_count, dx = counted(lambda xx, gg: bwd(xx, F(y, xx.t), gg), x, 1.0)
        assert dx == pytest.approx(derivative(lambda v: counted(fwd, v)[1], x), rel=1e-6, abs=1e-9)
        counts.add((f_count, b_count))
    assert len(counts) == 1                  # the same work on every branch
    args = {"approximate": approx} if approx else {}
    n = 2 * 3 * 5
    row, hidden = one(op, [3, 5], **args), one(op, [3, 5], hidden=True, **args).cost
    first = row.cost
    assert shape_of(row) == (2, 3, 5)
    assert (first.flops, first.backward_flops, first.macs) == (f_count * n, 0, 0)   # the model input: no gradient
    assert hidden.backward_flops == b_count * n
    assert (first.bytes_read, first.bytes_written) == (4 * n, 4 * n)


def softmax_row(xs):
    """Stable softmax of one row, as PyTorch computes it: max-reduce from -inf, subtract, exp, sum from 0, divide."""
    m = F(-math.inf, xs[0].t)
    for x in xs:
        m = x if x > m else m
    e = [exp(x - m) for x in xs]
    s = total(e)
    return [v / s for v in e]


def softmax_row_grad(ys, gs):
    """dx = y * (g - sum(g * y))."""
    s = total(g * y for g, y in zip(gs, ys))
    return [y * (g - s) for g, y in zip(gs, ys)]


@covers("softmax")
def test_softmax_counts_equal_counted_formula():
    xs, gs = [0.3, -1.2, 2.0, 0.7], [0.5, -0.25, 1.0, 2.0]
    for n in (1, 3, 4):
        f_count, ys = counted(lambda *v: softmax_row(list(v)), *xs[:n])
        b_count, dx = counted(lambda *v: softmax_row_grad(list(v[:n]), list(v[n:])), *ys, *gs[:n])
        assert (f_count, b_count) == (5 * n, 4 * n)
    # ... and the gradient is the real one: d/dx_i sum_j g_j softmax(x)_j
    for i in range(4):
        def loss(v, i=i):
            x = list(xs)
            x[i] = v
            return sum(g * y for g, y in zip(gs, counted(lambda *w: softmax_row(list(w)), *x)[1]))
        assert dx[i] == pytest.approx(derivative(loss, xs[i]), rel=1e-6)
    row = one("softmax", [3, 4], hidden=True, dim=-1)
    assert (row.cost.flops, row.cost.backward_flops) == (5 * 24, 4 * 24)
    assert shape_of(one("softmax", [3, 4], dim=1)) == (2, 3, 4)


@covers("dropout")
def test_dropout_counts_one_multiply_per_element_and_keeps_a_byte_mask():
    n = 2 * 3 * 5
    row = one("dropout", [3, 5], hidden=True, p=0.25).cost
    assert (row.flops, row.backward_flops) == (n, n)
    assert row.saved_bytes == n                      # its output is kept by no one; the mask is 1 byte per element
    zero = one("dropout", [3, 5], hidden=True, p=0).cost
    assert (zero.flops, zero.backward_flops, zero.saved_bytes) == (0, 0, 0)


# ---------------------------------------------------------------- linear and matmul

@covers("linear")
def test_linear_shape_params_and_products_by_loops():
    # torch 2.13.0: nn.Linear(4, 3) on (2, 5, 4) -> (2, 5, 3); weight (3, 4), bias (3,)
    row = one("linear", [5, 4], out_features=3)
    assert shape_of(row) == (2, 5, 3)
    assert params_of(row) == {"weight": (3, 4), "bias": (3,)}
    macs = sum(1 for _ in itertools.product(range(2 * 5), range(3), range(4)))   # (row, out, in)
    bias_adds = 2 * 5 * 3
    assert (row.cost.macs, row.cost.flops) == (macs, 2 * macs + bias_adds)
    assert row.cost.backward_flops == 2 * macs + bias_adds            # first layer: weight and bias gradients only
    hidden = one("linear", [5, 4], hidden=True, out_features=3).cost
    assert hidden.backward_flops == 4 * macs + bias_adds               # + the input gradient
    assert (row.cost.bytes_read, row.cost.bytes_written) == (4 * (2 * 5 * 4 + 15), 4 * 2 * 5 * 3)
    nobias = one("linear", [5, 4], out_features=3, bias=False).cost
    assert (nobias.flops, nobias.params) == (2 * macs, 12)


@covers("matmul")
def test_matmul_broadcast_shape_and_products_by_loops():
    # (B, 1, 3, 4) @ (B, 5, 4, 6) -> (B, 5, 3, 6), torch.matmul's batch broadcasting
    layers = [{"op": "layernorm", "name": "b"},                                    # (2, 5, 4, 6)
              {"op": "select", "name": "s", "dim": 1, "index": 0},                 # (2, 4, 6)
              {"op": "linear", "name": "l", "out_features": 3},                    # (2, 4, 3)
              {"op": "reshape", "name": "a", "shape": [1, 3, 4]},                  # (2, 1, 3, 4)
              {"op": "matmul", "name": "x", "inputs": ["a", "b"]}]
    row = spec_rows([5, 4, 6], layers)["x"]
    assert shape_of(row) == (2, 5, 3, 6)
    macs = sum(1 for _ in itertools.product(range(2), range(5), range(3), range(6), range(4)))
    assert (row.cost.macs, row.cost.flops) == (macs, 2 * macs)
    assert row.cost.backward_flops == 2 * (2 * macs)                   # both inputs need a gradient
    frozen = spec_rows([5, 4, 6], [dict(layers[0], trainable=False)] + layers[1:])["x"]
    assert frozen.cost.backward_flops == 2 * macs                      # 'b' no longer needs one


# ---------------------------------------------------------------- convolutions

def window_starts(size, k, s, d, pad_lo, pad_hi, ceil_mode=False):
    """Start of every window, enumerated one by one in padded coordinates (the input is [pad_lo, pad_lo + size)).
    A window is kept when its last tap lies in the padded input; in ceil mode (pooling) also one that hangs over
    the end, when the window before did not reach the padded end and it starts inside the input or the left
    padding (PyTorch's pooling_output_shape)."""
    end, starts = pad_lo + size + pad_hi, []
    while True:
        start = len(starts) * s
        fits = start + d * (k - 1) <= end - 1
        hangs = ceil_mode and starts and starts[-1] + d * (k - 1) < end - 1 and start < pad_lo + size
        if not (fits or hangs):
            return starts
        starts.append(start)


def conv_by_loops(batch, cin, cout, groups, sizes, k, s, d, pads):
    """(output spatial sizes, MACs): every output position of every output channel, times every input channel of
    its group and every kernel tap (taps on zero padding included, as im2col multiplies them)."""
    positions = [window_starts(n, kk, ss, dd, lo, hi) for n, kk, ss, dd, (lo, hi) in zip(sizes, k, s, d, pads)]
    macs = 0
    for _b, co in itertools.product(range(batch), range(cout)):
        g = co // (cout // groups)
        group_channels = range(g * cin // groups, (g + 1) * cin // groups)
        for _pos in itertools.product(*positions):
            for _ci, _tap in itertools.product(group_channels, itertools.product(*(range(kk) for kk in k))):
                macs += 1
    return tuple(len(p) for p in positions), macs


def _same_pads(k, d):
    """PyTorch's padding='same': total d*(k-1), the left side gets the floor half."""
    both = d * (k - 1)
    return both // 2, both - both // 2


# (spatial sizes, cin, cout, kernel, stride, padding, dilation, groups) -> output spatial sizes read off
# torch 2.13.0 nn.Conv1d / nn.Conv2d; their weight is (cout, cin / groups, *kernel) and bias (cout,)
CONV_FACTS = [
    ((11,), 4, 6, (3,), (2,), (1,), (2,), 2, (5,)),
    ((10,), 3, 5, (4,), (3,), (0,), (1,), 1, (3,)),
    ((7,), 4, 4, (3,), (1,), (2,), (3,), 4, (5,)),                   # depthwise, dilated
    ((9, 8), 4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2, (5, 6)),       # grouped, asymmetric
    ((7, 7), 3, 8, (3, 3), (2, 2), (1, 1), (1, 1), 1, (4, 4)),
    ((10, 11), 6, 6, (3, 3), (2, 2), (2, 2), (2, 2), 6, (5, 6)),     # depthwise, strided, dilated
    ((5, 6), 2, 4, (2, 3), (1, 1), "same", (2, 1), 1, (5, 6)),       # 'same' with an even dilated kernel
    ((6, 5), 2, 3, (3, 2), (1, 1), "valid", (1, 1), 1, (4, 4)),
]


@covers("conv1d", "conv2d")
@pytest.mark.parametrize("case", CONV_FACTS, ids=lambda c: f"{c[0]}-k{c[3]}-s{c[4]}-p{c[5]}-d{c[6]}-g{c[7]}")
def test_conv_shape_params_and_products_by_loops(case):
    sizes, cin, cout, k, s, p, d, g, torch_out = case
    op = f"conv{len(sizes)}d"
    pads = ([_same_pads(kk, dd) for kk, dd in zip(k, d)] if p == "same" else
            [(0, 0)] * len(k) if p == "valid" else [(pp, pp) for pp in p])
    brute_out, macs = conv_by_loops(2, cin, cout, g, sizes, k, s, d, pads)
    assert brute_out == torch_out                                       # the enumeration agrees with PyTorch
    args = dict(out_channels=cout, kernel_size=list(k), stride=list(s), dilation=list(d), groups=g,
                padding=p if isinstance(p, str) else list(p))
    row = one(op, [cin, *sizes], **args)
    out_elems = 2 * cout * math.prod(torch_out)
    assert shape_of(row) == (2, cout, *torch_out)
    assert params_of(row) == {"weight": (cout, cin // g, *k), "bias": (cout,)}
    assert (row.cost.macs, row.cost.flops) == (macs, 2 * macs + out_elems)
    assert row.cost.backward_flops == 2 * macs + out_elems               # first layer: no input gradient
    assert one(op, [cin, *sizes], hidden=True, **args).cost.backward_flops == 4 * macs + out_elems


def test_conv_refuses_what_pytorch_refuses():
    for args in ({"out_channels": 4, "kernel_size": 3, "groups": 3},               # 3 does not divide 4 channels
                 {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
                 {"out_channels": 4, "kernel_size": 9}):                            # kernel larger than 6 + 0
        with pytest.raises(SizingError):
            one("conv2d", [4, 6, 6], **args)


def conv_transpose_by_scatter(batch, cin, cout, groups, sizes, k, s, p, op, d):
    """(output spatial sizes, MACs): every input element of every channel, times every output channel of its
    group and every tap, scattered to position i*stride + tap*dilation of the uncropped output, which is then
    cropped by padding on both sides and grown by output_padding at the end."""
    extent, macs = [0, 0], 0
    for _b, ci in itertools.product(range(batch), range(cin)):
        g = ci // (cin // groups)
        for pos in itertools.product(*(range(n) for n in sizes)):
            for _co in range(g * cout // groups, (g + 1) * cout // groups):
                for tap in itertools.product(*(range(kk) for kk in k)):
                    full = [pos[i] * s[i] + tap[i] * d[i] for i in range(2)]
                    extent = [max(extent[i], full[i] + 1) for i in range(2)]
                    macs += 1
    return tuple(extent[i] - 2 * p[i] + op[i] for i in range(2)), macs


# (sizes, cin, cout, kernel, stride, padding, output_padding, dilation, groups) -> output sizes and weight shape
# read off torch 2.13.0 nn.ConvTranspose2d: weight (cin, cout / groups, *kernel)
CONV_T_FACTS = [
    ((3, 4), 4, 6, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 2, (6, 8), (4, 3, 3, 3)),
    ((5, 3), 2, 3, (2, 3), (3, 2), (0, 1), (2, 0), (1, 1), 1, (16, 5), (2, 3, 2, 3)),
    ((4, 4), 3, 3, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), 1, (9, 9), (3, 3, 3, 3)),
    ((4, 4), 3, 2, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, (8, 8), (3, 2, 4, 4)),
]


@covers("conv_transpose2d")
@pytest.mark.parametrize("case", CONV_T_FACTS, ids=lambda c: f"{c[0]}-k{c[3]}-s{c[4]}-op{c[6]}-g{c[8]}")
def test_conv_transpose2d_shape_params_and_products_by_scatter(case):
    sizes, cin, cout, k, s, p, op, d, g, torch_out, torch_weight = case
    brute_out, macs = conv_transpose_by_scatter(2, cin, cout, g, sizes, k, s, p, op, d)
    assert brute_out == torch_out
    args = dict(out_channels=cout, kernel_size=list(k), stride=list(s), padding=list(p), output_padding=list(op),
                dilation=list(d), groups=g)
    row = one("conv_transpose2d", [cin, *sizes], **args)
    out_elems = 2 * cout * math.prod(torch_out)
    assert shape_of(row) == (2, cout, *torch_out)
    assert params_of(row) == {"weight": torch_weight, "bias": (cout,)}
    assert (row.cost.macs, row.cost.flops) == (macs, 2 * macs + out_elems)
    assert row.cost.backward_flops == 2 * macs + out_elems
    assert one("conv_transpose2d", [cin, *sizes], hidden=True, **args).cost.backward_flops == 4 * macs + out_elems


def test_conv_transpose2d_refuses_output_padding_not_below_stride_or_dilation():
    with pytest.raises(SizingError, match="output_padding"):
        one("conv_transpose2d", [2, 4, 4], out_channels=2, kernel_size=3, stride=2, output_padding=2)


# ---------------------------------------------------------------- pools

# (H, W, kernel, stride, padding, dilation, ceil_mode) -> output (H, W), read off torch 2.13.0 nn.MaxPool2d
MAXPOOL_FACTS = [
    ((7, 8), (3, 3), (2, 2), (1, 1), (1, 1), True, (4, 5)),
    ((7, 8), (3, 3), (2, 2), (1, 1), (1, 1), False, (4, 4)),
    ((6, 6), (2, 2), (2, 2), (0, 0), (1, 1), True, (3, 3)),
    ((5, 5), (2, 2), (2, 2), (1, 1), (1, 1), True, (3, 3)),     # the last window would start in the padding
    ((10, 9), (3, 3), (3, 3), (1, 1), (2, 2), True, (4, 3)),
    ((9, 9), (3, 3), None, (1, 1), (1, 1), True, (4, 4)),        # stride defaults to the kernel
]
# (H, W, kernel, stride, padding, ceil_mode) -> output (H, W), read off torch 2.13.0 nn.AvgPool2d
AVGPOOL_FACTS = [
    ((7, 8), (3, 3), (2, 2), (1, 1), True, (4, 5)),
    ((5, 5), (2, 2), (2, 2), (1, 1), True, (3, 3)),
    ((6, 7), (3, 2), (2, 3), (1, 1), True, (4, 3)),
    ((6, 7), (3, 2), (2, 3), (1, 1), False, (3, 3)),
]


def pool_by_loops(sizes, k, s, p, d, ceil_mode):
    """(output sizes, taps): every window of the enumeration, and every tap of it (padding taps included)."""
    starts = [window_starts(n, kk, ss, dd, pp, pp, ceil_mode) for n, kk, ss, dd, pp in zip(sizes, k, s, d, p)]
    taps = sum(1 for _w in itertools.product(*starts) for _t in itertools.product(*(range(kk) for kk in k)))
    return tuple(len(x) for x in starts), taps


@covers("maxpool2d")
@pytest.mark.parametrize("case", MAXPOOL_FACTS)
def test_maxpool2d_shape_and_comparisons_by_loops(case):
    sizes, k, s, p, d, ceil_mode, torch_out = case
    out, taps = pool_by_loops(sizes, k, s or k, p, d, ceil_mode)
    assert out == torch_out
    args = dict(kernel_size=list(k), padding=list(p), dilation=list(d), ceil_mode=ceil_mode)
    if s:
        args["stride"] = list(s)
    row = one("maxpool2d", [3, *sizes], hidden=True, **args)
    outputs = 2 * 3 * math.prod(out)
    assert shape_of(row) == (2, 3, *out)
    assert (row.cost.flops, row.cost.macs) == (2 * 3 * taps, 0)        # one comparison per tap, per map
    assert row.cost.backward_flops == outputs                           # one add per output, at its argmax
    assert row.cost.saved_bytes == 8 * outputs                          # int64 argmax indices


def test_maxpool2d_refuses_padding_over_half_the_kernel_as_pytorch():
    # torch 2.13.0 refuses MaxPool2d(3, 3, padding=2, dilation=2): "pad should be smaller than or equal to half
    # of kernel size", the kernel size, not the dilated one
    with pytest.raises(SizingError, match="padding"):
        one("maxpool2d", [3, 10, 9], kernel_size=3, stride=3, padding=2, dilation=2)


@covers("avgpool2d")
@pytest.mark.parametrize("case", AVGPOOL_FACTS)
def test_avgpool2d_shape_and_adds_by_loops(case):
    sizes, k, s, p, ceil_mode, torch_out = case
    out, taps = pool_by_loops(sizes, k, s, p, (1, 1), ceil_mode)
    assert out == torch_out
    row = one("avgpool2d", [3, *sizes], hidden=True, kernel_size=list(k), stride=list(s), padding=list(p),
              ceil_mode=ceil_mode)
    outputs = 2 * 3 * math.prod(out)
    assert shape_of(row) == (2, 3, *out)
    assert row.cost.flops == 2 * 3 * taps + outputs                     # adds over the window, one divide
    assert row.cost.backward_flops == row.cost.flops                    # a divide and the scatter-adds


def adaptive_bins(size, out):
    """PyTorch's adaptive pooling bins: [floor(i * size / out), ceil((i + 1) * size / out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


# adaptive_avg_pool1d(arange(size), out) read off torch 2.13.0: the mean of each bin
ADAPTIVE_FACTS = {(5, 3): [0.5, 2.0, 3.5], (4, 6): [0.0, 0.5, 1.0, 2.0, 2.5, 3.0], (7, 4): [0.5, 2.0, 4.0, 5.5],
                  (10, 3): [1.5, 4.5, 7.5]}


@covers("adaptive_avgpool2d")
def test_adaptive_avgpool2d_bins_and_counts_by_loops():
    for (size, out), means in ADAPTIVE_FACTS.items():       # the enumerated bins are PyTorch's
        assert [sum(range(a, b)) / (b - a) for a, b in adaptive_bins(size, out)] == means
    for (h, w, oh, ow) in [(5, 4, 3, 6), (7, 10, 4, 3), (6, 6, 1, 1), (9, 4, 9, 4), (8, 5, 3, 2)]:
        per_map = sum((bh[1] - bh[0]) * (bw[1] - bw[0]) + 1
                      for bh in adaptive_bins(h, oh) for bw in adaptive_bins(w, ow))
        row = one("adaptive_avgpool2d", [3, h, w], hidden=True, output_size=[oh, ow])
        assert shape_of(row) == (2, 3, oh, ow)
        assert row.cost.flops == row.cost.backward_flops == 2 * 3 * per_map
    # torch 2.13.0: AdaptiveAvgPool2d((3, None)) on (1, 2, 7, 5) -> (1, 2, 3, 5)
    assert shape_of(one("adaptive_avgpool2d", [2, 7, 5], output_size=[3, None])) == (2, 2, 3, 5)


# ---------------------------------------------------------------- norms

def mean_var_forward(xs, eps=1e-5):
    """One statistic of LayerNorm / BatchNorm / GroupNorm: (xhat, mean, rstd), reductions starting from 0."""
    n = len(xs)
    mean = total(xs) / n
    xc = [x - mean for x in xs]
    rstd = rsqrt(total(c * c for c in xc) / n + eps)
    return [c * rstd for c in xc], mean, rstd


def mean_var_backward(gs, xhat, rstd, gamma):
    """dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * gamma (our docs' form; g
    itself without an affine weight)."""
    n = len(gs)
    dxhat = [g * w for g, w in zip(gs, gamma)] if gamma else gs
    m1, m2 = total(dxhat) / n, total(d * xh for d, xh in zip(dxhat, xhat)) / n
    return [rstd * (d - m1 - xh * m2) for d, xh in zip(dxhat, xhat)]


def rms_forward(xs, eps=1e-5):
    r = rsqrt(total(x * x for x in xs) / len(xs) + eps)
    return [x * r for x in xs], None, r


def rms_backward(gs, xhat, r, gamma):
    """dx = r * (dxhat - xhat * mean(dxhat * xhat)), dxhat as above."""
    dxhat = [g * w for g, w in zip(gs, gamma)] if gamma else gs
    m = total(d * xh for d, xh in zip(dxhat, xhat)) / len(gs)
    return [r * (d - xh * m) for d, xh in zip(dxhat, xhat)]


NORM_KINDS = {"mean_var": (mean_var_forward, mean_var_backward), "rms": (rms_forward, rms_backward)}


def norm_by_groups(shape, stat_of, kind, weight, bias):
    """(forward FLOPs, input-gradient FLOPs, weight-gradient FLOPs, statistics kept) of a norm over a tensor of
    ``shape``: every element is put in the statistic ``stat_of(index)`` names, each statistic normalised by the
    counted formula, then scaled (``weight``) and shifted (``bias``)."""
    forward, backward = NORM_KINDS[kind]
    groups: dict = {}
    for idx in itertools.product(*(range(n) for n in shape)):
        groups.setdefault(stat_of(idx), []).append(idx)
    t_fwd, t_dx, t_dw, kept = Tally(), Tally(), Tally(), 0
    for members in groups.values():
        xs = [F(0.1 * i - 0.3 * (i % 3), t_fwd) for i in range(len(members))]
        xhat, mean, rstd = forward(xs)
        kept += (mean is not None) + 1
        ys = [xh * 1.5 for xh in xhat] if weight else xhat          # scale by the affine weight
        if bias:
            ys = [y + 0.2 for y in ys]                                  # shift by the affine bias
        gs = [F(0.3 - 0.1 * i, t_dx) for i in range(len(members))]
        backward(gs, [F(_v(x), t_dx) for x in xhat], F(_v(rstd), t_dx), [1.5] * len(members) if weight else None)
        if weight:
            total(F(0.3, t_dw) * _v(xh) for xh in xhat)                 # weight gradient: sum(g * xhat)
        if bias:
            total(F(0.3, t_dw) for _ in xhat)                           # bias gradient: sum(g)
    return t_fwd.n, t_dx.n, t_dw.n, kept


def test_norm_backward_formulas_are_derivatives():
    xs, gs, gamma = [0.5, -1.0, 2.0, 0.25], [1.0, -0.5, 0.25, 2.0], [1.5, 0.5, -1.0, 2.0]
    for kind, (forward, backward) in NORM_KINDS.items():
        xhat, _, r = forward([F(x, Tally()) for x in xs])
        dx = backward([F(g, Tally()) for g in gs], xhat, r, [F(w, Tally()) for w in gamma])
        for i in range(len(xs)):
            def loss(v, i=i):
                x = list(xs)
                x[i] = v
                out = forward([F(u, Tally()) for u in x])[0]
                return sum(g * w * _v(o) for g, w, o in zip(gs, gamma, out))
            assert _v(dx[i]) == pytest.approx(derivative(loss, xs[i]), rel=1e-5), (kind, i)


def running_stats_update():
    """BatchNorm's running statistics per channel: rm += m * (mean - rm); rv += m * (var * n / (n - 1) - rv)."""
    t = Tally()
    rm, rv, mean, var = (F(v, t) for v in (0.0, 1.0, 0.3, 0.7))
    rm = rm + 0.1 * (mean - rm)
    rv = rv + 0.1 * (var * (8 / 7) - rv)
    return t.n


# op, args, one sample's shape, statistic of an index (batch first), kind, (weight, bias) present, and the
# parameter shapes torch 2.13.0 gives
NORM_CASES = [
    ("batchnorm2d", {}, [3, 2, 2], lambda i: i[1], "mean_var", (True, True), {"weight": (3,), "bias": (3,)}),
    ("batchnorm1d", {}, [3, 4], lambda i: i[1], "mean_var", (True, True), {"weight": (3,), "bias": (3,)}),
    ("batchnorm1d", {"affine": False, "track_running_stats": False}, [5], lambda i: i[1], "mean_var",
     (False, False), {}),
    ("layernorm", {}, [3, 4], lambda i: i[:2], "mean_var", (True, True), {"weight": (4,), "bias": (4,)}),
    ("layernorm", {"normalized_shape": [3, 4]}, [2, 3, 4], lambda i: i[:2], "mean_var", (True, True),
     {"weight": (3, 4), "bias": (3, 4)}),
    ("layernorm", {"bias": False}, [3, 4], lambda i: i[:2], "mean_var", (True, False), {"weight": (4,)}),
    ("layernorm", {"elementwise_affine": False}, [3, 4], lambda i: i[:2], "mean_var", (False, False), {}),
    ("rmsnorm", {"normalized_shape": [3, 4]}, [2, 3, 4], lambda i: i[:2], "rms", (True, False),
     {"weight": (3, 4)}),
    ("groupnorm", {"num_groups": 2}, [6, 2, 3], lambda i: (i[0], i[1] // 3), "mean_var", (True, True),
     {"weight": (6,), "bias": (6,)}),
]


@covers("batchnorm1d", "batchnorm2d", "layernorm", "rmsnorm", "groupnorm")
@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: c[0] + "-" + "-".join(map(str, c[1])))
def test_norm_counts_by_statistic_groups(case):
    op, args, sample, stat_of, kind, (weight, bias), torch_params = case
    fwd, dx, dw, kept = norm_by_groups((2, *sample), stat_of, kind, weight, bias)
    if op.startswith("batchnorm") and args.get("track_running_stats", True):
        fwd += sample[0] * running_stats_update()
    first, hidden = one(op, sample, **args), one(op, sample, hidden=True, **args)
    trainable = weight or bias
    assert shape_of(first) == (2, *sample)
    assert params_of(first) == torch_params
    assert first.cost.flops == fwd
    assert first.cost.backward_flops == (dw if trainable else 0)
    assert hidden.cost.backward_flops == dx + (dw if trainable else 0)
    assert first.cost.saved_bytes == 4 * kept                  # fp32 mean and rstd (RMSNorm: rstd) per statistic


def test_batchnorm_buffers_are_the_running_statistics():
    # torch 2.13.0 BatchNorm2d(5) buffers: running_mean (5,), running_var (5,) and num_batches_tracked, a 0-dim
    # int64 counter that is not a float statistic and is not counted here
    assert one("batchnorm2d", [5, 2, 2]).cost.buffers == 10
    assert one("batchnorm2d", [5, 2, 2], track_running_stats=False).cost.buffers == 0


# ---------------------------------------------------------------- merges and views

@covers("add", "mul")
def test_add_and_mul_broadcast_forward_and_reduce_back():
    layers = [{"op": "layernorm", "name": "a"},                                   # (2, 3, 4)
              {"op": "linear", "name": "b", "out_features": 1},                   # (2, 3, 1), broadcast over 4
              {"op": "add", "name": "s", "inputs": ["a", "b"]},
              {"op": "mul", "name": "m", "inputs": ["a", "b", "s"]}]
    rows = spec_rows([3, 4], layers)
    n = 2 * 3 * 4
    assert shape_of(rows["s"]) == shape_of(rows["m"]) == (2, 3, 4)
    assert (rows["s"].cost.flops, rows["m"].cost.flops) == (n, 2 * n)
    assert rows["s"].cost.backward_flops == n             # a passes through; b's gradient is summed back over 4
    # mul: each input's gradient is g times the two others (2 per element); b's is then summed back
    assert rows["m"].cost.backward_flops == 3 * 2 * n + n
    # torch broadcasting: (B, 3, 1) + (B, 1, 4) -> (B, 3, 4)
    grid = spec_rows([3, 4], [{"op": "linear", "name": "col", "out_features": 1},
                              {"op": "reshape", "name": "row", "inputs": "input", "shape": [3, 4]},
                              {"op": "select", "name": "r0", "dim": 1, "index": 0},
                              {"op": "reshape", "name": "r", "shape": [1, 4]},
                              {"op": "add", "name": "x", "inputs": ["col", "r"]}])
    assert shape_of(grid["x"]) == (2, 3, 4)
    with pytest.raises(SizingError, match="broadcast"):
        spec_rows([3, 4], [{"op": "linear", "name": "l", "out_features": 3},
                           {"op": "add", "name": "x", "inputs": ["l", "input"]}])


@covers("concat", "flatten", "reshape", "select", "narrow", "expand", "identity")
def test_views_and_concat_shapes_as_pytorch_with_zero_flops():
    # shapes read off torch 2.13.0 on x = zeros(2, 3, 4, 5)
    cases = [("flatten", {}, (2, 60)), ("flatten", {"start_dim": 2, "end_dim": 3}, (2, 3, 20)),
             ("flatten", {"end_dim": -2}, (2, 12, 5)), ("reshape", {"shape": [-1, 10]}, (2, 6, 10)),
             ("select", {"dim": 2, "index": 1}, (2, 3, 5)), ("select", {"dim": -1, "index": -1}, (2, 3, 4)),
             ("narrow", {"dim": -1, "start": 1, "length": 3}, (2, 3, 4, 3)),
             ("narrow", {"dim": 1, "start": 0, "length": 3}, (2, 3, 4, 5)), ("identity", {}, (2, 3, 4, 5))]
    for op, args, torch_shape in cases:
        row = one(op, [3, 4, 5], hidden=True, **args)
        assert shape_of(row) == torch_shape, (op, args)
        assert row.cost == type(row.cost)(), op          # no arithmetic and, as a view, no traffic
    # torch.cat([zeros(2, 3, 4, 5), zeros(2, 3, 2, 5)], 2) -> (2, 3, 6, 5)
    rows = spec_rows([3, 4, 5], [{"op": "avgpool2d", "name": "half", "kernel_size": [2, 1]},
                                 {"op": "concat", "name": "x", "inputs": ["input", "half"], "dim": 2}])
    cat = rows["x"].cost
    assert shape_of(rows["x"]) == (2, 3, 6, 5)
    assert (cat.flops, cat.backward_flops) == (0, 0)
    assert (cat.bytes_read, cat.bytes_written) == (4 * (120 + 60), 4 * 180)    # a copy: its traffic counts
    # torch 2.13.0: zeros(2, 3, 1, 5).expand(2, 3, 4, 5) -> (2, 3, 4, 5); its backward sums the gradient back,
    # autograd's sum_to_size: one add per output element (as add's broadcast input)
    expand = one("expand", [3, 1, 5], hidden=True, shape=[-1, 4, -1])
    assert shape_of(expand) == (2, 3, 4, 5)
    assert (expand.cost.flops, expand.cost.bytes_read, expand.cost.backward_flops) == (0, 0, 2 * 3 * 4 * 5)
    same = one("expand", [3, 1, 5], hidden=True, shape=[-1, 1, 5])
    assert same.cost.backward_flops == 0
    for args in ({"shape": [3, 4]}, {"shape": [-1, 4, 6]}, {"shape": [2, 4, 5]}):
        with pytest.raises(SizingError):
            one("expand", [3, 1, 5], **args)
    for op, args in (("reshape", {"shape": [7, -1]}), ("select", {"dim": 1, "index": 3}),
                     ("narrow", {"dim": -1, "start": 3, "length": 3}), ("narrow", {"dim": 0, "start": 0, "length": 1}),
                     ("flatten", {"start_dim": 0})):
        with pytest.raises(SizingError):
            one(op, [3, 4, 5], **args)


# ---------------------------------------------------------------- embeddings

@covers("embedding")
def test_embedding_gathers_with_zero_flops_and_scatter_adds_back():
    spec_input = {"shape": [5], "dtype": "int64"}
    row = spec_rows(spec_input, [{"op": "embedding", "name": "x", "num_embeddings": 10, "embedding_dim": 3}])["x"]
    n = 2 * 5 * 3
    assert shape_of(row) == (2, 5, 3)
    assert params_of(row) == {"weight": (10, 3)}                         # torch 2.13.0 nn.Embedding(10, 3)
    assert (row.cost.flops, row.cost.backward_flops) == (0, n)            # one add per gathered element
    assert (row.cost.bytes_read, row.cost.bytes_written) == (8 * 10 + 4 * n, 4 * n)   # int64 ids and used rows
    frozen = spec_rows(spec_input, [{"op": "embedding", "name": "x", "num_embeddings": 10, "embedding_dim": 3,
                                     "trainable": False}])["x"]
    assert frozen.cost.backward_flops == 0


@covers("positional_embedding", "token_type_embedding")
def test_learned_tables_add_one_row_per_position():
    for op, rows_used in (("positional_embedding", 5), ("token_type_embedding", 1)):
        row = one(op, [5, 3], hidden=True, num_embeddings=7)
        n = sum(1 for _ in itertools.product(range(2), range(5), range(3)))    # one add per element
        assert shape_of(row) == (2, 5, 3)
        assert params_of(row) == {"weight": (7, 3)}
        assert (row.cost.flops, row.cost.backward_flops) == (n, n)          # the table gradient sums over batch
        assert one(op, [5, 3], num_embeddings=rows_used).cost.flops == n   # just enough rows
    with pytest.raises(SizingError, match="num_embeddings"):
        one("positional_embedding", [5, 3], num_embeddings=4)


# ---------------------------------------------------------------- attention

def attention_by_matrices(B, T, E, H, KV, bias=True, causal=False, dropout=0.0, input_grad=True):
    """(MACs, forward FLOPs, backward FLOPs) listing every matrix product per head, (rows, inner, cols)."""
    d, rep = E // H, H // KV
    fwd_mm = [(B * T, E, E), (B * T, E, KV * d), (B * T, E, KV * d)]          # q, k, v projections
    for _b, _h in itertools.product(range(B), range(H)):
        fwd_mm += [(T, d, T), (T, T, d)]                                     # q_h k_{h // rep}^T, P_h v_{h // rep}
    fwd_mm.append((B * T, E, E))                                             # out projection
    macs = sum(m * k * n for m, k, n in fwd_mm)
    scores = B * H * T * T
    softmax_fwd = counted(lambda *v: softmax_row(list(v)), *[0.1 * i for i in range(T)])[0] // T
    per_score = 1 + softmax_fwd + causal + (dropout > 0)                     # scale, softmax, mask, dropout
    bias_adds = B * T * (E + 2 * KV * d + E) if bias else 0
    forward = 2 * macs + per_score * scores + bias_adds
    bwd_mm = [(B * T, E, E)]                                                 # d(attention output) = dY Wo
    for _b, _h in itertools.product(range(B), range(H)):
        bwd_mm += [(T, d, T), (T, T, d), (T, T, d), (T, d, T)]               # dP, dV_h, dQ_h, dK_h
    if input_grad:
        bwd_mm += [(B * T, E, E), (B * T, KV * d, E), (B * T, KV * d, E)]    # dx through Wq, Wk, Wv
    bwd_mm += [(E, B * T, E), (E, B * T, KV * d), (E, B * T, KV * d), (E, B * T, E)]   # dWq, dWk, dWv, dWo
    softmax_bwd = 4                                                          # softmax_row_grad, counted above
    gqa_sums = 2 * B * KV * (rep - 1) * T * d                                # dK, dV over each group's heads
    backward = 2 * sum(m * k * n for m, k, n in bwd_mm) + (softmax_bwd + 1 + (dropout > 0)) * scores
    return macs, forward, backward + gqa_sums + bias_adds


@covers("multihead_attention")
@pytest.mark.parametrize("B,T,E,H,KV,bias,causal,dropout", [
    (2, 5, 8, 2, None, True, False, 0.0), (1, 4, 12, 6, 2, False, True, 0.1), (2, 3, 16, 4, 1, True, True, 0.0)])
def test_attention_counts_by_per_head_matrices(B, T, E, H, KV, bias, causal, dropout):
    args = dict(num_heads=H, bias=bias, causal=causal, dropout=dropout)
    if KV:
        args["num_kv_heads"] = KV
    kv = KV or H
    macs, forward, backward = attention_by_matrices(B, T, E, H, kv, bias, causal, dropout)
    hidden = one("multihead_attention", [T, E], hidden=True, batch=B, **args)
    assert shape_of(hidden) == (B, T, E)
    assert (hidden.cost.macs, hidden.cost.flops, hidden.cost.backward_flops) == (macs, forward, backward)
    first = one("multihead_attention", [T, E], batch=B, **args)
    assert first.cost.backward_flops == attention_by_matrices(B, T, E, H, kv, bias, causal, dropout, False)[2]
    d = E // H
    expect = {"q_proj.weight": (E, E), "k_proj.weight": (kv * d, E), "v_proj.weight": (kv * d, E),
              "out_proj.weight": (E, E)}
    if bias:
        expect.update({"q_proj.bias": (E,), "k_proj.bias": (kv * d,), "v_proj.bias": (kv * d,), "out_proj.bias": (E,)})
    assert params_of(first) == expect
    masked = sum(1 for _b, _h, i, j in itertools.product(range(B), range(H), range(T), range(T)) if j > i)
    assert (first.note is not None) == causal
    if causal:
        assert f"{masked} masked scores" in first.note and f"{2 * masked * d} MACs" in first.note


def test_attention_params_equal_pytorch_multihead_attention():
    # torch 2.13.0 nn.MultiheadAttention(8, 2): in_proj_weight (24, 8), in_proj_bias (24,), out_proj.weight (8, 8),
    # out_proj.bias (8,): 288 parameters, the same as separate q, k, v projections
    assert one("multihead_attention", [5, 8], num_heads=2).cost.params == 288
    # torch 2.13.0 scaled_dot_product_attention(q (2, 8, 5, 3), k = v (2, 2, 5, 3), enable_gqa=True) -> (2, 8, 5, 3):
    # 8 query heads share 2 kv heads; the output keeps the query heads, so the layer maps (B, T, E) to (B, T, E)
    assert shape_of(one("multihead_attention", [5, 24], num_heads=8, num_kv_heads=2)) == (2, 5, 24)
    for args in ({"num_heads": 3}, {"num_heads": 4, "num_kv_heads": 3}):
        with pytest.raises(SizingError):
            one("multihead_attention", [5, 8], **args)


# ---------------------------------------------------------------- LSTM and GRU

def lstm_cell(x, h, c, bias):
    """torch.nn.LSTM's equations for one hidden unit: x and h are the 4 gates' products W_ih x and W_hh h."""
    pre = [(xi + 0.1 + hi + 0.2) if bias else (xi + hi) for xi, hi in zip(x, h)]
    i, f, o = _sigmoid(pre[0]), _sigmoid(pre[1]), _sigmoid(pre[3])
    g = tanh(pre[2])
    c = f * c + i * g
    return o * tanh(c)


def gru_cell(x, h, h_prev, bias):
    """torch.nn.GRU's equations: r, z = sigmoid(W_i x + b_i + W_h h + b_h); n = tanh(W_in x + b_in + r (W_hn h + b_hn));
    h' = (1 - z) n + z h."""
    r = _sigmoid(x[0] + 0.1 + h[0] + 0.2 if bias else x[0] + h[0])
    z = _sigmoid(x[1] + 0.1 + h[1] + 0.2 if bias else x[1] + h[1])
    n = tanh((x[2] + 0.1 if bias else x[2]) + r * (h[2] + 0.2 if bias else h[2]))
    return (1.0 - z) * n + z * h_prev


def lstm_cell_backward(pre, c_prev, dout, dh_next, dc_next):
    """Backprop of one LSTM unit-step by hand: pre = the 4 gate pre-activations (i, f, g, o), dout the gradient
    from the layer above, dh_next / dc_next what the next step sends back. Returns (d pre, dc_prev)."""
    i, f, o = _sigmoid(pre[0]), _sigmoid(pre[1]), _sigmoid(pre[3])
    g = tanh(pre[2])
    c = f * c_prev + i * g
    tc = tanh(c)
    return _lstm_grads(i, f, g, o, c_prev, tc, dout, dh_next, dc_next)


def _lstm_grads(i, f, g, o, c_prev, tc, dout, dh_next, dc_next):
    dh = dout + dh_next
    do, dtc = dh * tc, dh * o
    dc = dc_next + dtc * (1.0 - tc * tc)
    di, df, dg, dc_prev = dc * g, dc * c_prev, dc * i, dc * f
    return [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], dc_prev


def _gru_grads(r, z, n, hn, h_prev, dout, dh_next, w_hh_part):
    dh = dout + dh_next
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dz = dh * (h_prev - n) * z * (1.0 - z)
    dr = dn * hn * r * (1.0 - r)
    dhn = dn * r
    return [dr, dz, dn], [dr, dz, dhn], dh * z + w_hh_part      # d(ih side), d(hh side), dh_prev


def gru_cell_backward(x, h, h_prev, dout, dh_next, w_hh_part):
    """Backprop of one GRU unit-step by hand: x, h = the 3 input-side and hidden-side products (W_i x, W_h h),
    w_hh_part what W_hh^T sends to h_prev. Returns (d x side, d h side, dh_prev)."""
    r, z = _sigmoid(x[0] + h[0]), _sigmoid(x[1] + h[1])
    n = tanh(x[2] + r * h[2])
    return _gru_grads(r, z, n, h[2], h_prev, dout, dh_next, w_hh_part)


def cell_backward_flops(cell):
    """FLOPs of the hand-written backward of one unit-step, from the values its forward saved."""
    t = Tally()
    saved = (0.6, 0.7, -0.3, 0.4, 0.5, 0.2) if cell == "lstm" else (0.6, 0.7, -0.3, 0.2, 0.5)
    (_lstm_grads if cell == "lstm" else _gru_grads)(*[F(v, t) for v in saved + (0.1, 0.2, 0.3)])
    return t.n


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_cell_backward_is_the_gradient(cell):
    """The hand-written backward that cell_backward_flops counts is the true gradient: central finite differences
    of L = dout * h + dc_next * c (LSTM) or dout * h' (GRU) in every input of the unit-step."""
    dout, dh_next, dc_next = 0.7, -0.4, 0.3
    if cell == "lstm":
        pre, c_prev = [0.3, -0.5, 0.8, 0.1], 0.6

        def loss(v):
            i, f, o = (1 / (1 + math.exp(-v[k])) for k in (0, 1, 3))
            g = math.tanh(v[2])
            c = f * v[4] + i * g
            return (dout + dh_next) * o * math.tanh(c) + dc_next * c
        point = pre + [c_prev]
        t = Tally()
        dpre, dc_prev = lstm_cell_backward(*[[F(v, t) for v in pre]] + [F(v, t) for v in (c_prev, dout, dh_next,
                                                                                         dc_next)])
        got = [_v(d) for d in dpre] + [_v(dc_prev)]
    else:
        x, h, h_prev = [0.3, -0.5, 0.8], [0.2, 0.4, -0.6], 0.5

        def loss(v):
            r, z = 1 / (1 + math.exp(-v[0] - v[3])), 1 / (1 + math.exp(-v[1] - v[4]))
            n = math.tanh(v[2] + r * v[5])
            return (dout + dh_next) * ((1 - z) * n + z * v[6])
        point = x + h + [h_prev]
        t = Tally()
        dx, dh, dh_prev = gru_cell_backward([F(v, t) for v in x], [F(v, t) for v in h],
                                            *[F(v, t) for v in (h_prev, dout, dh_next, 0.0)])
        got = [_v(d) for d in dx + dh] + [_v(dh_prev)]
    for k, g in enumerate(got):
        want = derivative(lambda u: loss(point[:k] + [u] + point[k + 1:]), point[k])
        assert g == pytest.approx(want, rel=1e-6, abs=1e-9), (cell, k)


def rnn_by_steps(cell, B, T, n_in, H, layers, dirs, bias, input_grad, dropout=0.0):
    """(MACs, forward FLOPs, backward FLOPs) by an explicit loop over layer, direction, time step and sample. Each
    step multiplies W_ih (gates*H x in) by x_t and W_hh (gates*H x H) by h_{t-1}, then runs the cell on every
    hidden unit (counted). Backward per step: dh_{t-1} = W_hh^T dgates, dx_t = W_ih^T dgates (not for the model
    input), dW_ih, dW_hh, bias sums over both biases, and the cell's hand-written backward (counted)."""
    gates = {"lstm": 4, "gru": 3}[cell]

    def cell_flops(with_bias):
        t = Tally()
        x, h = [F(0.1 * k, t) for k in range(gates)], [F(-0.2 * k, t) for k in range(gates)]
        (lstm_cell(x, h, F(0.5, t), with_bias) if cell == "lstm" else gru_cell(x, h, F(0.5, t), with_bias))
        return t.n

    unit, unit_bias, unit_back = cell_flops(False), cell_flops(True) - cell_flops(False), cell_backward_flops(cell)
    macs = forward = backward = 0
    for layer in range(layers):
        size_in = n_in if layer == 0 else dirs * H
        dropped = B * T * size_in if layer > 0 and dropout else 0      # PyTorch drops every layer's input but the first
        forward += dropped
        backward += dropped
        for _d, _t, _b in itertools.product(range(dirs), range(T), range(B)):
            m_in, m_hh = gates * H * size_in, gates * H * H
            macs += m_in + m_hh
            forward += 2 * (m_in + m_hh) + H * (unit + (unit_bias if bias else 0))
            backward += 2 * m_hh + H * unit_back + 2 * (m_in + m_hh)          # dh, cell, dW_ih, dW_hh
            backward += 2 * m_in if (layer > 0 or input_grad) else 0           # dx
            backward += 2 * gates * H if bias else 0                           # sums for b_ih and b_hh
    return macs, forward, backward


# torch 2.13.0 nn.LSTM(5, 4, num_layers=2, bidirectional=True) / nn.GRU(...): parameter shapes (gates*H rows)
def torch_rnn_params(gates):
    out = {}
    for layer, size_in in ((0, 5), (1, 8)):
        for suffix in ("", "_reverse"):
            out.update({f"weight_ih_l{layer}{suffix}": (gates * 4, size_in),
                        f"weight_hh_l{layer}{suffix}": (gates * 4, 4),
                        f"bias_ih_l{layer}{suffix}": (gates * 4,), f"bias_hh_l{layer}{suffix}": (gates * 4,)})
    return out


@covers("lstm", "gru")
@pytest.mark.parametrize("cell,gates,torch_total", [("lstm", 4, 800), ("gru", 3, 600)])
def test_recurrent_counts_by_time_steps(cell, gates, torch_total):
    row = one(cell, [7, 5], batch=3, hidden_size=4, num_layers=2, bidirectional=True)
    # torch 2.13.0 on (3, 7, 5), batch_first: output (3, 7, 8); 800 (LSTM) / 600 (GRU) parameters
    assert shape_of(row) == (3, 7, 8)
    assert params_of(row) == torch_rnn_params(gates)
    assert row.cost.params == torch_total
    for layers, dirs, bias, dropout in ((1, 1, True, 0.0), (2, 2, True, 0.0), (2, 1, False, 0.0), (3, 2, True, 0.3)):
        args = dict(hidden_size=4, num_layers=layers, bidirectional=dirs == 2, bias=bias, dropout=dropout)
        for hidden in (False, True):
            r = one(cell, [7, 5], hidden=hidden, batch=3, **args).cost
            assert (r.macs, r.flops, r.backward_flops) == rnn_by_steps(cell, 3, 7, 5, 4, layers, dirs, bias, hidden,
                                                                       dropout), (layers, dirs, bias, dropout, hidden)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_cost_is_exactly_linear_in_time_steps(cell):
    costs = {t: one(cell, [t, 5], hidden=True, hidden_size=4, num_layers=2).cost for t in (1, 2, 9)}
    for t in (2, 9):
        assert (costs[t].macs, costs[t].flops, costs[t].backward_flops) == \
               (t * costs[1].macs, t * costs[1].flops, t * costs[1].backward_flops)


def test_lstm_keeps_four_gates_cell_and_tanh_per_unit_and_step():
    # last in the graph: only the op's own tensors are counted on its row (its input is the model's)
    per_layer = 3 * 7 * 4 * (4 + 2) * 4                             # (B, T, H) x (4 gates, c, tanh c), fp32
    assert one("lstm", [7, 5], batch=3, hidden_size=4).cost.saved_bytes == per_layer
    two = one("lstm", [7, 5], batch=3, hidden_size=4, num_layers=2, dropout=0.5).cost
    assert two.saved_bytes == 2 * per_layer + 3 * 7 * 4 * 4 + 3 * 7 * 4   # + layer 1's input, + its 1-byte mask


# ---------------------------------------------------------------- graph rules for backward

def test_backward_starts_at_the_first_trainable_weight():
    rows = spec_rows([6], [{"op": "relu", "name": "r"}, {"op": "linear", "name": "l1", "out_features": 5},
                           {"op": "tanh", "name": "t"}, {"op": "linear", "name": "l2", "out_features": 3}])
    macs1, macs2 = 2 * 6 * 5, 2 * 5 * 3
    assert rows["r"].cost.backward_flops == 0                           # before any weight: nothing
    assert rows["l1"].cost.backward_flops == 2 * macs1 + 10              # weight + bias gradients only
    assert rows["t"].cost.backward_flops == 3 * 10
    assert rows["l2"].cost.backward_flops == 4 * macs2 + 6


def test_frozen_layers_compute_no_weight_gradient():
    frozen_first = spec_rows([6], [{"op": "linear", "name": "l1", "out_features": 5, "trainable": False},
                                   {"op": "relu", "name": "r"}, {"op": "linear", "name": "l2", "out_features": 3}])
    assert frozen_first["l1"].cost.backward_flops == 0
    assert frozen_first["r"].cost.backward_flops == 0                    # nothing upstream needs a gradient
    assert frozen_first["l2"].cost.backward_flops == 2 * (2 * 5 * 3) + 6
    frozen_hidden = spec_rows([6], [{"op": "linear", "name": "l1", "out_features": 5},
                                    {"op": "linear", "name": "l2", "out_features": 3, "trainable": False}])
    assert frozen_hidden["l2"].cost.backward_flops == 2 * (2 * 5 * 3)    # the input gradient only, no bias sum
    assert frozen_hidden["l2"].cost.params == 18


def test_fan_out_adds_k_minus_one_gradients_on_the_producer():
    def producer_backward(k, source="ln"):
        layers = [{"op": "layernorm", "name": "ln"}]
        layers += [{"op": "linear", "name": f"b{i}", "out_features": 4, "inputs": source} for i in range(k)]
        if k > 1:
            layers.append({"op": "add", "name": "sum", "inputs": [f"b{i}" for i in range(k)]})
        return spec_rows([3, 4], layers)["ln"].cost.backward_flops
    n = 2 * 3 * 4
    for k in (2, 3, 5):
        assert producer_backward(k) - producer_backward(1) == (k - 1) * n
    # read twice by one layer (x + x): one accumulation; the model input, which needs no gradient: none
    twice = spec_rows([3, 4], [{"op": "layernorm", "name": "ln"}, {"op": "add", "name": "x", "inputs": ["ln", "ln"]}])
    assert twice["ln"].cost.backward_flops - producer_backward(1) == n
    readers = lambda k: sum(r.cost.backward_flops for r in spec_rows([3, 4], [
        {"op": "linear", "name": f"b{i}", "out_features": 4, "inputs": "input"} for i in range(k)] + [
        {"op": "add", "name": "sum", "inputs": [f"b{i}" for i in range(k)]}] * (k > 1)).values())
    assert readers(3) == 3 * readers(1)                 # weight gradients only: no sum for the model's input


# ---------------------------------------------------------------- the registry is covered

def test_every_registered_op_is_covered():
    import importlib
    for module in ("test_hf", "test_onnx"):     # the ops of the importers are proven beside them
        importlib.import_module(module)
    assert COVERED == set(REGISTRY), f"ops without a test: {sorted(set(REGISTRY) - COVERED)}"
