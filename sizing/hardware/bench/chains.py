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

The chains are spec data (sizing/model/graph.py), so every executor runs the same layers and the prediction can
count them. Nothing the zoo holds is timed here: a model the bench never saw is predicted from these alone.
"""
from __future__ import annotations

LENGTHS = (2, 16)               # layers of the class per chain (tiny)
WIDE_LENGTHS = (1, 3)           # (wide: each layer costs milliseconds)


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


# input shape (batch 1) and the widths the classes use: tiny and wide
_ROWS = {False: [2, 4], True: [1024, 1024]}
_MAPS = {False: [2, 4, 4], True: [64, 128, 128]}
_TOKENS = {False: [2, 4], True: [256, 1024]}
_SEQ = {False: [2, 4], True: [256, 256]}


def chain_spec(cls: str, n: int, wide: bool = False) -> dict:
    """Spec data of the chain of ``n`` layers of class ``cls`` (tiny, or ``wide``)."""
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


def chain_graph(cls: str, n: int, wide: bool = False):
    from ...model.graph import build

    spec = chain_spec(cls, n, wide)
    return build(spec, {}, spec["name"])


def wide_layer(cls: str):
    """The estimate of the wide chain's one-layer graph and the name of its class layer (for the roofline)."""
    from ...model.estimate import estimate_graph

    return estimate_graph(chain_graph(cls, 1, True)), "l0"
