"""The executor's fixed costs, for ``sizing bench`` (issue 17): a training step of a chain of tiny layers, whose
work is negligible, so its time is the cost of the layer calls and of the step around them.

The chain is ``pairs`` x (linear ``CHAIN_WIDTH`` -> ``CHAIN_WIDTH``, relu) at batch 1, every layer its own node;
each pair runs ``KERNELS_PER_PAIR`` kernels in a training step, counted as sizing/predict/roofline.py
``kernels`` counts them: the linear's forward and its two backward products, the relu's forward and backward.
sizing/hardware/bench/measure.py times it at a few lengths and fits t = step overhead + pairs x pair cost.
"""
from __future__ import annotations

CHAIN_WIDTH = 4
KERNELS_PER_PAIR = 5


def chain_spec(pairs: int, width: int = CHAIN_WIDTH) -> dict:
    """Spec data of the chain: input [width], then ``pairs`` (linear, relu) pairs."""
    layers = []
    for i in range(pairs):
        layers += [{"op": "linear", "name": f"fc{i}", "out_features": width}, {"op": "relu", "name": f"act{i}"}]
    return {"name": f"call_chain_{pairs}", "input": [width], "defaults": {"batch": 1, "dtype": "fp32"},
            "layers": layers}


def chain_graph(pairs: int, width: int = CHAIN_WIDTH):
    from ..model.graph import build

    return build(chain_spec(pairs, width), {}, f"call_chain_{pairs}")


def call_chain():
    """The chains as ``sizing bench`` times them (sizing/hardware/bench/measure.py ``CallChain``)."""
    from ..hardware.bench.measure import CallChain

    return CallChain(chain_steps, KERNELS_PER_PAIR)


def chain_steps(pairs: int):
    """``run(reps)``: ``reps`` training steps (forward, loss, backward, SGD) of the chain through the executor,
    after one step that loads or compiles its kernels."""
    import numpy as np

    from .model import Model

    model = Model(chain_graph(pairs), np.float32)
    model.step(1e-3)

    def run(reps):
        for _ in range(reps):
            model.step(1e-3)

    return run


def layer_chains():
    """Our executor as ``sizing bench`` times it by layer class (sizing/hardware/bench/chains.py)."""
    from ..hardware.bench.measure import LayerChains

    return LayerChains("sizing", steps=class_steps)


def class_steps(cls: str, n: int, wide: bool):
    """``run(reps)``: ``reps`` training steps of the layer-class chain through the executor, after one step that
    loads or compiles its kernels."""
    import numpy as np

    from ..hardware.bench.chains import chain_graph
    from .model import Model

    model = Model(chain_graph(cls, n, wide), np.float32)
    model.step(1e-3)

    def run(reps):
        for _ in range(reps):
            model.step(1e-3)

    return run
