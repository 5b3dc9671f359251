"""The layer chains ``sizing bench`` times through an executor (ours, and PyTorch's where torch is importable):
for each layer class (sizing/hardware/devices.py ``LAYER_CLASSES``) a first layer, then ``n`` layers of the class,
trained as one model (forward, loss, backward, SGD). Two chain lengths give the line t = a + n x per-layer
(Hockney's t = t0 + n / r_inf): its slope is one layer's time in a training step.

- tiny: layers of 4 features or 2 x 4 x 4 maps, whose work is negligible, so the slope is the fixed cost of a
  layer (its calls, allocations, dispatch and update); the linear chain (no first layer) also gives the fixed cost
  of a step, its intercept.
- wide: the same classes at a size real layers have (1 Mi-element activations, 4 MiB in fp32: the size of the
  cores' L2 caches together; rows of 1024 for the row classes; a 3 x 3 convolution of 64 channels at 56 x 56; a
  1024 x 1024 linear over 256 tokens; attention of 4 heads over 256 positions of width 256); its slope less the tiny
  slope is the layer's work, which sizing/predict/roofline.py sets against the roofline of that same layer to get
  the share of the roofline the executor reaches for the class.

- shapes (``SHAPES``): more layers of a class at the other shapes models use, so that the share of the roofline is
  read by shape rather than one figure per class: a 1 x 1, a stride-2 and a 7 x 7 stride-2 convolution, a small
  5 x 5 one, a deep one (256 channels at 14 x 14) and one at batch 8 (the wide one's, 8 times the rows); linears
  over 1 and 8 tokens (a batch-1 or batch-8 layer: thin products that stream their weights), the same over 512
  features (1 MiB of weights, which stay in cache from step to step: an MLP's or LeNet's layers) and over 1024; a deep
  one on 7 x 7 maps (512 channels: a ResNet's last stage at batch 1, 49 output rows a product); depthwise at stride
  2, small, on 7 x 7 maps (960 channels: MobileNet-V2's last stage) and at batch 8; the row and map classes at 64 Ki elements (their tensors cache-resident) and
  16 Mi (64 MiB, past the cores' L2); a stride-2 pool; attention with dropout, and causal with dropout (PyTorch's
  fused kernel takes neither path).
- a fixed cost on another code path (``Shape.fixed``): ``conv_onednn``, the tiny convolution at batch 2. PyTorch
  runs a convolution through oneDNN unless it is a small batch-1 one (ConvParams::use_mkldnn, pytorch/pytorch
  aten/src/ATen/native/Convolution.cpp: fp32 on the CPU takes oneDNN when (strided, dilated, batch >= 16, a kernel
  other than 1 x 1 or more than one thread) and (grouped, a kernel over 3 x 3 both ways, batch > 1 or more than
  20480 input elements); torch 2.13 on this machine's profiler agrees on each case), so the tiny batch-1 chain
  times its native kernels, and real layers (nearly all of them oneDNN's) pay oneDNN's cost per call instead
  (sizing/predict/roofline.py ``conv_path``). Its slope is that path's fixed cost (``layer_us``), not work.
- ops of the elementwise class whose cost per element is not a relu's (``own_op``): relu6 (a clip), tanh, gelu
  (erf and tanh forms), dropout (a random mask), softmax, a residual add (its backward's gradient sum at the fork), and an embedding (32 Ki x 768 table, 512 ids: its gather and its dense
  table gradient); a row of such an op reads its share from that op's layer alone. A shape that keeps
  its input's shape is chained as the others are; one that changes it (a stride, other channels) fans out: ``n``
  copies read the first layer's output and an add sums them, lengths ``FAN_LENGTHS``, so the slope is one copy and
  one more input of the add, which the roofline side counts the same way (the difference between the lengths).

The chains are spec data (sizing/model/graph.py), so every executor runs the same layers and the prediction can
count them. Nothing the zoo holds is timed here: a model the bench never saw is predicted from these alone.
"""
from __future__ import annotations

from typing import NamedTuple

LENGTHS = (2, 16)               # layers of the class per chain (tiny)
WIDE_LENGTHS = (1, 3)           # (wide: each layer costs milliseconds)
FAN_LENGTHS = (2, 3)            # copies of a shape that fans out (each with an add after it)

class Shape(NamedTuple):
    """A measured layer: its class, its input (a shape without the batch, or an ids input's spec), the layer, whether
    it comes after the class's first layer, the batch it runs at, and whether it is a tiny layer whose slope is
    the fixed cost of another code path (chained as the tiny layers are, at their lengths)."""
    cls: str
    input: list | dict
    layer: dict
    first: bool
    batch: int = 1
    fixed: bool = False


_IDS = {"shape": [512], "dtype": "int64"}           # 512 token ids: an embedding's input

SHAPES = {
    "conv_1x1": Shape("conv", [64, 28, 28], {"op": "conv2d", "out_channels": 256, "kernel_size": 1}, True),
    "conv_s2": Shape("conv", [128, 28, 28], {"op": "conv2d", "out_channels": 128, "kernel_size": 3, "stride": 2,
                                             "padding": 1}, True),
    "conv_7x7": Shape("conv", [3, 112, 112], {"op": "conv2d", "out_channels": 64, "kernel_size": 7, "stride": 2,
                                              "padding": 3}, False),       # a stem: the network's input, no gradient
    "conv_5x5": Shape("conv", [6, 14, 14], {"op": "conv2d", "out_channels": 16, "kernel_size": 5}, True),
    "conv_deep": Shape("conv", [256, 14, 14], {"op": "conv2d", "out_channels": 256, "kernel_size": 3,
                                               "padding": 1}, True),
    "conv_b8": Shape("conv", [64, 56, 56], {"op": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1},
                     True, 8),
    "conv_7px": Shape("conv", [512, 7, 7], {"op": "conv2d", "out_channels": 512, "kernel_size": 3, "padding": 1},
                      True),
    "conv_onednn": Shape("conv", [2, 4, 4], {"op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                         True, 2, True),
    "linear_1": Shape("linear", [1, 4096], {"op": "linear", "out_features": 4096}, False),
    "linear_8": Shape("linear", [8, 2048], {"op": "linear", "out_features": 2048}, False),
    "linear_1024": Shape("linear", [1024, 1024], {"op": "linear", "out_features": 1024}, False),
    "linear_1_small": Shape("linear", [1, 512], {"op": "linear", "out_features": 512}, False),
    "linear_8_small": Shape("linear", [8, 512], {"op": "linear", "out_features": 512}, False),
    "depthwise_s2": Shape("depthwise", [96, 56, 56], {"op": "conv2d", "out_channels": 96, "kernel_size": 3,
                                                      "stride": 2, "padding": 1, "groups": 96}, True),
    "depthwise_small": Shape("depthwise", [192, 14, 14], {"op": "conv2d", "out_channels": 192, "kernel_size": 3,
                                                          "padding": 1, "groups": 192}, True),
    "depthwise_7px": Shape("depthwise", [960, 7, 7], {"op": "conv2d", "out_channels": 960, "kernel_size": 3,
                                                      "padding": 1, "groups": 960}, True),
    "depthwise_b8": Shape("depthwise", [96, 56, 56], {"op": "conv2d", "out_channels": 96, "kernel_size": 3,
                                                      "padding": 1, "groups": 96}, True, 8),
    "batchnorm_small": Shape("batchnorm", [16, 64, 64], {"op": "batchnorm2d"}, True),
    "batchnorm_large": Shape("batchnorm", [64, 512, 512], {"op": "batchnorm2d"}, True),
    "rownorm_small": Shape("rownorm", [64, 1024], {"op": "layernorm"}, True),
    "rownorm_large": Shape("rownorm", [16384, 1024], {"op": "layernorm"}, True),
    "elementwise_small": Shape("elementwise", [64, 1024], {"op": "relu"}, True),
    "elementwise_large": Shape("elementwise", [16384, 1024], {"op": "relu"}, True),
    "tanh": Shape("elementwise", [1024, 1024], {"op": "tanh"}, True),
    "relu6": Shape("elementwise", [1024, 1024], {"op": "relu6"}, True),
    "gelu": Shape("elementwise", [1024, 1024], {"op": "gelu"}, True),
    "gelu_tanh": Shape("elementwise", [1024, 1024], {"op": "gelu", "approximate": "tanh"}, True),
    "dropout": Shape("elementwise", [1024, 1024], {"op": "dropout", "p": 0.1}, True),
    "softmax": Shape("elementwise", [1024, 1024], {"op": "softmax"}, True),
    "add": Shape("elementwise", [1024, 1024], {"op": "add"}, True),
    "embedding": Shape("elementwise", _IDS, {"op": "embedding", "num_embeddings": 32768, "embedding_dim": 768},
                       False),
    "pool_small": Shape("pool", [16, 64, 64], {"op": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1}, True),
    "pool_s2": Shape("pool", [64, 112, 112], {"op": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}, True),
    "attention_dropout": Shape("attention", [256, 256], {"op": "multihead_attention", "num_heads": 4,
                                                         "dropout": 0.1}, False),
    "attention_causal": Shape("attention", [256, 256], {"op": "multihead_attention", "num_heads": 4,
                                                        "dropout": 0.1, "causal": True}, False),
}


def _first(cls: str, wide: bool) -> list:
    """The layer before the chain: a trainable one, so the chain's layers take gradients (none for linear and
    attention, which are trainable themselves)."""
    if cls in ("linear", "attention"):
        return []
    if cls in ("rownorm", "elementwise"):
        return [{"op": "layernorm", "name": "first"}]
    return [{"op": "batchnorm2d", "name": "first"}] if wide else [
        {"op": "conv2d", "name": "first", "out_channels": 2, "kernel_size": 1}]


def _layer(cls: str, i: int, channels: int) -> dict:
    name = f"l{i}"
    return {
        "linear": {"op": "linear", "name": name, "out_features": None},
        "conv": {"op": "conv2d", "name": name, "out_channels": channels, "kernel_size": 3, "padding": 1},
        "depthwise": {"op": "conv2d", "name": name, "out_channels": channels, "kernel_size": 3, "padding": 1,
                      "groups": channels},
        "batchnorm": {"op": "batchnorm2d", "name": name},
        "rownorm": {"op": "layernorm", "name": name},
        "elementwise": {"op": "relu", "name": name},
        "pool": {"op": "maxpool2d", "name": name, "kernel_size": 3, "stride": 1, "padding": 1},
        "attention": {"op": "multihead_attention", "name": name, "num_heads": None},
    }[cls]


def own_op(shape: str) -> bool:
    """Whether the layer of ``SHAPES[shape]`` is another op than its class's chains run (tanh, gelu, dropout, softmax,
    embedding among the elementwise class's relu): its share is that op's alone (sizing/predict/roofline.py
    ``efficiency_key``)."""
    s = SHAPES[shape]
    return s.layer["op"] != _layer(s.cls, 0, 1)["op"]


# input shape (batch 1) and the widths the classes use: tiny and wide
_ROWS = {False: [2, 4], True: [1024, 1024]}
_MAPS = {False: [2, 4, 4], True: [64, 128, 128]}
_TOKENS = {False: [2, 4], True: [256, 1024]}
_SEQ = {False: [2, 4], True: [256, 256]}
# logits of the wide linear chain's loss beyond the tiny one's (its cross-entropy: the step's loss term, per logit)
LOSS_ELEMENTS = _TOKENS[True][0] * _TOKENS[True][1] - _TOKENS[False][0] * _TOKENS[False][1]


def fans_out(shape: str) -> bool:
    """Whether the layer of ``SHAPES[shape]`` changes its input's shape (its chain fans out)."""
    from ...model.graph import build

    s = SHAPES[shape]
    if s.layer["op"] == "add":
        return False
    spec = {"name": shape, "input": s.input, "defaults": {"batch": 1, "dtype": "fp32"},
            "layers": [{**s.layer, "name": "l0"}]}
    return list(build(spec, {}, shape).node("l0").out.shape[1:]) != s.input


def shape_spec(shape: str, n: int) -> dict:
    """Spec data of the chain of ``n`` layers of ``SHAPES[shape]``: in a row when the layer keeps its input's
    shape, else ``n`` copies reading one input and an add of theirs (module docstring); an add's chain is a
    residual stream, each add summing the one before and the first layer's output (so each adds a fork too, whose
    gradients backward sums, as a residual network's do)."""
    cls, dims, layer, first, batch, fixed = SHAPES[shape]
    layers = _first(cls, not fixed) if first else []
    source = layers[0]["name"] if layers else "input"
    fan = fans_out(shape)
    for i in range(n):
        inputs = {"inputs": source} if fan else {}
        if layer["op"] == "add":
            inputs = {"inputs": [f"l{i - 1}" if i else source, source]}
        layers.append({**layer, "name": f"l{i}", **inputs})
    if fan and n > 1:
        layers.append({"op": "add", "name": "sum", "inputs": [f"l{i}" for i in range(n)]})
    return {"name": f"{shape}_{n}", "input": dims, "defaults": {"batch": batch, "dtype": "fp32"}, "layers": layers}


def shape_lengths(shape: str) -> tuple:
    return LENGTHS if SHAPES[shape].fixed else FAN_LENGTHS if fans_out(shape) else WIDE_LENGTHS


def chain_spec(cls: str, n: int, wide: bool | str = False) -> dict:
    """Spec data of the chain of ``n`` layers of class ``cls`` (tiny, ``wide``, or a shape of ``SHAPES``)."""
    if isinstance(wide, str):
        return shape_spec(wide, n)
    if cls in ("rownorm", "elementwise"):
        shape = _ROWS[wide]
    elif cls == "linear":
        shape = _TOKENS[wide]
    elif cls == "attention":
        shape = _SEQ[wide]
    else:
        shape = _MAPS[wide]
    if cls == "conv" and wide:
        shape = [64, 56, 56]            # a ResNet stage-1 convolution, 64 -> 64 channels at 56 x 56
    layers = _first(cls, wide)
    for i in range(n):
        layer = _layer(cls, i, shape[0])
        if cls == "linear":
            layer["out_features"] = shape[-1]
        if cls == "attention":
            layer["num_heads"] = 4 if wide else 1
        layers.append(layer)
    return {"name": f"{cls}_{'wide' if wide else 'tiny'}_{n}", "input": shape,
            "defaults": {"batch": 1, "dtype": "fp32"}, "layers": layers}


def chain_graph(cls: str, n: int, wide: bool | str = False):
    from ...model.graph import build

    spec = chain_spec(cls, n, wide)
    return build(spec, {}, spec["name"])


def bench_layers(cls: str):
    """(size, lengths) of the class's measured layers beyond the tiny one: ``True`` (its wide layer), then the
    names of its ``SHAPES``."""
    return [(True, WIDE_LENGTHS)] + [(s, shape_lengths(s)) for s, v in SHAPES.items() if v.cls == cls]


def slope_graphs(cls: str, wide: bool | str):
    """The estimates of the two chains whose difference is one measured layer (and, fanned out, one more input of
    the add), and their lengths: what the roofline sets against the measured slope."""
    from ...model.estimate import estimate_graph

    lengths = WIDE_LENGTHS if wide is True else shape_lengths(wide)
    return [estimate_graph(chain_graph(cls, n, wide)) for n in lengths], lengths
