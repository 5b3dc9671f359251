"""Published training runs against the model: ``compare(run)`` predicts one run of the calibration table and puts
both on one scale, model FLOPs utilisation (PaLM's MFU: forward and backward FLOPs of the model, no recomputation,
over the devices' dense peak), counting the model's FLOPs exactly from the run's graph; ``fit_efficiency`` is the
geometric mean over the calibrate runs of published / modelled MFU at an efficiency of 1."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..common.errors import SizingError
from .calibration import Calibration, Run
from .roofline import peaks
from .search import Pins, search
from .training import tokens_per_sample
from .workload import Workload


def transformer_config(name: str, layers: int, d_model: int, heads: int, ffn: int, vocab: int, seq_len: int,
                       kv_heads: int | None = None, mlp: str = "gelu", tied: bool | None = None,
                       dropout: float = 0.0, embedding_dropout: float | None = None) -> dict:
    """A calibration table's compact transformer as the Hugging Face config.json a user would type for it, so the
    model is built by the HF importer (sizing/model/importers/hf.py), the one path a user's model takes:
    - ``mlp: swiglu``: a ``llama`` config (LlamaForCausalLM: RMSNorm, rotary q and k, grouped-query attention
      with ``kv_heads``, SwiGLU of width ``ffn``, no biases; ``dropout`` on the attention probabilities);
    - ``gelu`` or ``relu``: a ``gpt2`` config (GPT2LMHeadModel, the architecture of GPT-3, Megatron-LM's GPT and
      OPT: learned positions, LayerNorm, biased projections, an MLP of width ``ffn``; ``dropout`` on the attention
      probabilities and before each residual add, ``embedding_dropout`` (default ``dropout``) after the embedding).
    ``tied``: the output projection shares the embedding (None: the family's default, untied for llama and tied
    for gpt2, as transformers' config classes); ``seq_len``: max_position_embeddings / n_positions."""
    if mlp == "swiglu":
        return {"model_type": "llama", "_name_or_path": name, "num_hidden_layers": layers, "hidden_size": d_model,
                "num_attention_heads": heads, "num_key_value_heads": kv_heads or heads, "intermediate_size": ffn,
                "vocab_size": vocab, "max_position_embeddings": seq_len, "hidden_act": "silu",
                "attention_dropout": dropout, "tie_word_embeddings": bool(tied)}
    if kv_heads not in (None, heads):
        raise SizingError(f"calibration model {name}: kv_heads needs mlp: swiglu (a gpt2 config has no "
                          "grouped-query attention)")
    return {"model_type": "gpt2", "_name_or_path": name, "n_layer": layers, "n_embd": d_model, "n_head": heads,
            "n_inner": ffn, "vocab_size": vocab, "n_positions": seq_len, "activation_function": mlp,
            "attn_pdrop": dropout, "resid_pdrop": dropout,
            "embd_pdrop": dropout if embedding_dropout is None else embedding_dropout,
            "tie_word_embeddings": True if tied is None else tied}


def transformer_spec(name: str, *args, **kwargs) -> dict:
    """The spec (docs/spec.md) of a compact transformer (``transformer_config`` arguments): the HF importer's
    spec of its config.json."""
    from ..model.importers.hf import spec_from_config
    return spec_from_config(transformer_config(name, *args, **kwargs), f"calibration model {name}").data


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


def run_pins(run: Run, software: dict, typed: str = "user") -> Pins:
    """What the prediction of ``run`` is told beyond the model, device, count, precision and global batch:
    ``typed`` 'user' fixes only the system (its node size) and what its framework can do (``software``: the
    run's profile); 'published' also every layout flag the run published (tensor and pipeline parallel, ZeRO,
    recomputation, micro-batch; a parallel degree the run did not publish is searched)."""
    system = Pins(node_size=run.node_size, **software)
    if typed == "user":
        return system
    return replace(system, tensor_parallel=run.tensor_parallel, pipeline_parallel=run.pipeline_parallel,
                   zero=run.zero, recompute="full" if run.recompute else "none",
                   micro_batch=run.micro_batch or (1 if (run.pipeline_parallel or 1) > 1 else None))


def run_workload(run: Run) -> Workload:
    return Workload(dtype=run.dtype, optimizer=run.optimizer, tokens=run.tokens)


def run_estimator(run: Run):
    """The run's model at any micro-batch."""
    from functools import lru_cache

    from ..model.estimate import estimate, estimate_graph
    from ..model.graph import build
    workload = run_workload(run)
    spec = None if run.zoo else transformer_spec(run.id, **run.transformer)

    @lru_cache(maxsize=None)
    def at(batch: int):
        args = {**workload.estimate_args(), "batch": batch}
        if run.zoo:
            return estimate(run.zoo, **args)
        return estimate_graph(build(spec, {}, f"calibration run {run.id}", **args))
    return at


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


def compare(run: Run, cal: Calibration, db: dict, efficiency: float | None = None, typed: str = "user"
            ) -> Comparison:
    """Predict ``run`` with the planner (framework efficiency ``efficiency``, default the fitted one), told what
    ``typed`` says (``run_pins``): by default only what a user knows, so the planner finds the layout. A run
    published as device-hours over its whole training is compared at the predicted MFU x the table's goodput:
    its hours include interruptions and restarts, which the prediction (time while training) leaves out; the other
    figures are throughput while training."""
    device = cal.device(run.device, db)
    workload = run_workload(run)
    at = run_estimator(run)
    factors = cal.factors(device, workload.compute_precision, db, network_gbs=run.network_gbs)
    if efficiency is not None:
        factors = replace(factors, framework_efficiency=efficiency)
    pred = search(at, workload, device, factors, run_pins(run, cal.software[run.software], typed), devices=run.devices, global_batch=run.batch,
                  name=run.id, allow_overflow=typed == "published")
    est = at(1)
    t = est.totals
    ratio = (t.flops + t.backward_flops) / (2 * t.flops + t.backward_flops) if run.recompute else 1.0
    mat, _ = peaks(device, workload.compute_precision)
    # device-hours over a whole run count its interruptions and restarts (the goodput); the other figures are
    # throughput while training
    mfu = pred.mfu * (cal.goodput if run.published == "device_hours" else 1.0)
    return Comparison(run, published_mfu(run, est, mat, ratio), mfu, pred)


def fit_efficiency(cal: Calibration, db: dict) -> float:
    """Geometric mean over the calibrate runs of published MFU / modelled MFU at framework efficiency 1."""
    ratios = [c.published_mfu / c.predicted_mfu
              for c in (compare(r, cal, db, 1.0) for r in cal.runs if r.use == "calibrate")]
    return math.exp(sum(map(math.log, ratios)) / len(ratios))


# ---------------------------------------------------------------------------------------------------------------
# Serving runs

@dataclass(frozen=True)
class ServingComparison:
    run: object
    predicted: float                # the run's figure as the model predicts it
    prediction: object

    @property
    def error(self) -> float:
        """predicted / published - 1 of the figure (a throughput, or a latency)."""
        return self.predicted / self.run.value - 1


def lm_model(name: str, transformer: dict, seq_len: int, dtype: str = "bf16"):
    """sizing.predict.serving.Model of a transformer spec (``transformer_spec`` arguments) at ``seq_len``."""
    from ..model.estimate import estimate_graph
    from ..model.graph import build
    from ..model.lm import figures
    from .serving import serving_model

    spec = transformer_spec(name, **{**transformer, "seq_len": seq_len})

    def est_at(t):
        return estimate_graph(build(spec, {}, f"serving run {name}", batch=1, dtype=dtype, seq_len=t))
    est = est_at(seq_len)
    return serving_model(est, figures(est, lambda t: est_at(t).totals.flops))


def compare_serving(run, cal: Calibration, db: dict, efficiency=None, model=None) -> ServingComparison:
    """Predict serving ``run`` at ``efficiency`` (sizing.predict.serving.Efficiency; default the fitted one);
    ``model``: the run's serving Model when the caller has it already."""
    from .serving import Request, predict_serving

    device = cal.device(run.device, db)
    model = model or lm_model(run.id, run.model, run.prompt)
    request = Request(run.concurrency, run.prompt, run.output, run.weights, run.kv_cache, run.mode)
    factors = cal.factors(device, "fp8" if run.weights == "fp8" else "bf16", db)
    eff = cal.serving_efficiency if efficiency is None else efficiency
    pred = predict_serving(model, request, device, factors, eff, run.tensor_parallel, engine=run.engine)
    figure = {"tokens_per_s": pred.tokens_per_s, "tpot_ms": pred.tpot_s * 1e3, "ttft_ms": pred.ttft_s * 1e3}
    return ServingComparison(run, figure[run.published], pred)


def fit_serving_efficiency(cal: Calibration, db: dict):
    """The prefill and decode efficiencies (sizing.predict.serving.Efficiency) that make the calibrate serving runs
    right in the least-squares sense of log(predicted / published) (scipy's Nelder-Mead over their logarithms,
    from 1 and 1); the validate runs never enter."""
    from scipy.optimize import minimize

    from .serving import Efficiency

    runs = [r for r in cal.serving_runs if r.use == "calibrate"]
    models = [lm_model(r.id, r.model, r.prompt) for r in runs]

    def loss(x):
        eff = Efficiency(*map(math.exp, x))
        return sum(math.log(compare_serving(r, cal, db, eff, m).predicted / r.value) ** 2 for r, m in zip(runs, models))
    best = minimize(loss, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-10})
    return Efficiency(*map(math.exp, best.x))
