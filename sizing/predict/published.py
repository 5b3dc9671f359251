"""Published training runs against the model: ``compare(run)`` predicts one run of the calibration table and puts
both on one scale, model FLOPs utilisation (PaLM's MFU: forward and backward FLOPs of the model, no recomputation,
over the devices' dense peak), counting the model's FLOPs exactly from the run's graph; ``fit_efficiency`` is the
geometric mean over the calibrate runs of published / modelled MFU at an efficiency of 1."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .calibration import Calibration, Run
from .roofline import peaks
from .setup import Setup
from .training import predict, tokens_per_sample
from .workload import Workload


def transformer_spec(name: str, layers: int, d_model: int, heads: int, ffn: int, vocab: int, seq_len: int,
                     kv_heads: int | None = None, mlp: str = "gelu", norm: str = "layernorm",
                     tied: bool = False) -> dict:
    """A decoder-only transformer as a spec (docs/spec.md): token embedding; ``layers`` pre-norm blocks of causal
    self-attention (``kv_heads`` for grouped-query attention) and an MLP (``gelu`` or ``relu``: up, activation,
    down; ``swiglu``: down(silu(gate x) * up x), Shazeer 2020), each with a residual add; a final norm and the
    output projection (``tied`` to the embedding). No biases (as PaLM and LLaMA; GPT-3's add < 0.1% FLOPs)."""
    ln = {"op": norm}
    attn = {"op": "multihead_attention", "name": "attn", "num_heads": heads, "causal": True, "bias": False}
    if kv_heads:
        attn["num_kv_heads"] = kv_heads
    block = [dict(ln, name="norm1"), attn, {"op": "add", "name": "res1", "inputs": ["attn", "input"]},
             dict(ln, name="norm2")]
    if mlp == "swiglu":
        block += [{"op": "linear", "name": "gate", "out_features": ffn, "bias": False},
                  {"op": "silu", "name": "act"},
                  {"op": "linear", "name": "up", "inputs": "norm2", "out_features": ffn, "bias": False},
                  {"op": "mul", "name": "glu", "inputs": ["act", "up"]}]
    else:
        block += [{"op": "linear", "name": "up", "out_features": ffn, "bias": False}, {"op": mlp, "name": "act"}]
    block += [{"op": "linear", "name": "down", "out_features": d_model, "bias": False},
              {"op": "add", "name": "res2", "inputs": ["down", "res1"]}]
    head = {"op": "linear", "name": "lm_head", "out_features": vocab, "bias": False}
    if tied:
        head["tie"] = "wte"
    return {"name": name, "input": {"shape": ["$seq_len"], "dtype": "int64"}, "defaults": {"seq_len": seq_len},
            "blocks": {"decoder": {"layers": block}},
            "layers": [{"op": "embedding", "name": "wte", "num_embeddings": vocab, "embedding_dim": d_model},
                       {"block": "decoder", "name": "h", "repeat": layers}, dict(ln, name="norm_f"), head]}


@dataclass(frozen=True)
class Comparison:
    run: Run
    published_mfu: float
    predicted_mfu: float
    prediction: object

    @property
    def error(self) -> float:
        """Relative error of the predicted throughput (= of the time, inverted): predicted / published - 1."""
        return self.predicted_mfu / self.published_mfu - 1


def run_setup(run: Run) -> tuple[Workload, Setup, int]:
    """The workload (per-replica batch: the global batch over the data-parallel degree), setup and data-parallel
    degree a run was trained with."""
    dp = run.devices // (run.tensor_parallel * run.pipeline_parallel)
    batch = max(1, round(run.batch / dp))
    workload = Workload(batch=batch, dtype=run.dtype, optimizer=run.optimizer, tokens=run.tokens)
    setup = Setup(devices=run.devices, tensor_parallel=run.tensor_parallel, pipeline_parallel=run.pipeline_parallel,
                  micro_batch=run.micro_batch, zero=run.zero, recompute=run.recompute, node_size=run.node_size)
    return workload, setup, dp


def run_estimate(run: Run, workload: Workload):
    from ..model.estimate import estimate, estimate_graph
    from ..model.graph import build
    if run.zoo:
        return estimate(run.zoo, **workload.estimate_args())
    spec = transformer_spec(run.id, **run.transformer)
    return estimate_graph(build(spec, {}, f"calibration run {run.id}", **workload.estimate_args()))


def published_mfu(run: Run, est, peak: int, recompute_ratio: float) -> float:
    """The run's published figure as MFU, with the model FLOPs per sample counted from ``est``."""
    per_sample = (est.totals.flops + est.totals.backward_flops) / est.settings["batch"]
    v = run.value
    if run.published == "mfu":
        return v
    if run.published == "hfu_tflops":
        return v * 1e12 * recompute_ratio / peak
    if run.published == "tflops":
        return v * 1e12 / peak
    if run.published == "tokens_per_s":
        return v * per_sample / tokens_per_sample(est) / peak
    if run.published == "samples_per_s":
        return v * per_sample / (run.devices * peak)
    if run.published == "step_s":
        return run.batch * per_sample / (v * run.devices * peak)
    samples = run.tokens / tokens_per_sample(est)
    return samples * per_sample / (v * 3600 * peak)


def compare(run: Run, cal: Calibration, db: dict, efficiency: float | None = None) -> Comparison:
    """Predict ``run`` with the model (framework efficiency ``efficiency``, default the fitted one)."""
    device = cal.device(run.device, db)
    workload, setup, _ = run_setup(run)
    est = run_estimate(run, workload)
    factors = cal.factors(device, workload.compute_precision, db, network_gbs=run.network_gbs)
    if efficiency is not None:
        factors = replace(factors, framework_efficiency=efficiency)
    pred = predict(est, workload, device, setup, factors)
    t = est.totals
    ratio = (t.flops + t.backward_flops) / (2 * t.flops + t.backward_flops) if run.recompute else 1.0
    mat, _ = peaks(device, workload.compute_precision)
    return Comparison(run, published_mfu(run, est, mat, ratio), pred.mfu, pred)


def fit_efficiency(cal: Calibration, db: dict) -> float:
    """Geometric mean over the calibrate runs of published MFU / modelled MFU at framework efficiency 1."""
    ratios = [c.published_mfu / c.predicted_mfu
              for c in (compare(r, cal, db, 1.0) for r in cal.runs if r.use == "calibrate")]
    return math.exp(sum(map(math.log, ratios)) / len(ratios))
