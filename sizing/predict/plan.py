"""The library calls behind `sizing estimate`: ``estimate_answer`` (a spec and the command's options -> the
estimate, a language model's figures and, with a device, the planner's prediction or the serving model, as the
dict its JSON and CSV writers take), ``plan`` (a loose device name, the shipped calibration and what the user knows:
device count or deadline, global batch, any pinned layout dimension -> the planner's Prediction) and ``plan_serve``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..hardware.lookup import resolve_device
from .search import Pins, search
from .training import Prediction


def plan(at: Callable[[int], object], device_name: str, hwdb_files=(), *, devices: int | None = None,
         global_batch: int | None = None, samples: int | None = None, tokens: int | None = None, epochs: int = 1,
         precision: str | None = None, pins: Pins = Pins(), objective: str = "time",
         deadline_s: float | None = None, max_devices: int = 131072, network_gbs: float | None = None,
         pue: float | None = None, environ=None, say=None, executor: str = "sizing") -> Prediction:
    """Train the model ``at`` gives (its Estimate at any micro-batch; its dtype and optimizer) on the device a
    loose ``device_name`` means (hwdb id, name, or 'local'), with the shipped calibration: the planner
    (sizing/predict/search.py) finds the layout. SizingError, one line, when the device is unknown or lacks the
    precision, when a pin is impossible, or when nothing fits. ``say``: told what a family name was taken to mean
    (resolve_device; default stderr). ``executor``: whose CPU step a bench profile predicts ('sizing': ours,
    'pytorch'; calibration ``factors``)."""
    from .calibration import shipped
    from .workload import Workload

    device, db = resolve_device(device_name, hwdb_files, environ, say)
    s = at(pins.micro_batch or 1).settings
    workload = Workload(dtype=s["dtype"], precision=precision, optimizer=s["optimizer"], samples=samples,
                        tokens=tokens, epochs=epochs)
    factors = shipped().factors(device, workload.compute_precision, db, network_gbs=network_gbs, pue=pue,
                                executor=executor)
    return search(at, workload, device, factors, pins, devices=devices, global_batch=global_batch,
                  deadline_s=deadline_s, objective=objective, max_devices=max_devices,
                  name=at(pins.micro_batch or 1).graph.name)


def plan_serve(model, device_name: str, request, hwdb_files=(), *, devices: int | None = None, dtype: str = "bf16",
               environ=None, say=None):
    """Serve a causal LM (``model``: sizing.predict.serving.Model) on the device a loose ``device_name`` means,
    with the shipped calibration's serving efficiency: on ``devices``, or the fewest that fit and meet the
    request's targets (sizing/predict/serving.py ``plan_serving``)."""
    from .calibration import shipped
    from .serving import matmul_precision, plan_serving

    device, db = resolve_device(device_name, hwdb_files, environ, say)
    cal = shipped()
    factors = cal.factors(device, matmul_precision(device, request.weights, dtype), db)
    return plan_serving(model, request, device, factors, cal.serving_efficiency, devices=devices, dtype=dtype)


@dataclass(frozen=True)
class EstimateAnswer:
    """What `sizing estimate` answers. ``report``: the dict its JSON and CSV writers take (the estimate, a language
    model's ``language_model`` figures, and with a device ``prediction`` or ``inference``); ``kind``: which of the
    two it holds (None without a device); ``prediction``: that part's dict, for the table writers."""
    report: dict
    kind: str | None = None
    prediction: dict | None = None


def load_estimate(spec: str, *, batch=None, dtype=None, optimizer=None, seq_len=None, finetune=None, lora_rank=None,
                  lora_targets=None, inference=False, allow_unmapped=False, **_):
    """(the Estimate of ``spec`` at the sizes given, the fine-tuning tuple or None): the first step of
    ``estimate_answer``, apart so that `sizing estimate --emit-yaml` can stop after it. Other options are
    ignored."""
    from ..common.errors import SizingError
    from ..model.estimate import estimate_graph, finetuned, load_graph

    if finetune is None and (lora_rank is not None or lora_targets is not None):
        raise SizingError("--lora-rank and --lora-targets go with --finetune lora or qlora")
    tune = None if finetune is None else (finetune, lora_rank, lora_targets)
    if tune and inference:
        raise SizingError("--finetune is training; --inference serves the model: give one")
    sizes = {"batch": batch, "dtype": dtype, "optimizer": optimizer, "seq_len": seq_len}
    return finetuned(estimate_graph(load_graph(spec, allow_unmapped, finetune=tune, **sizes)), tune), tune


def estimate_answer(spec: str, loaded=None, *, batch=None, dtype=None, optimizer=None, seq_len=None, device=None,
                    devices=None, global_batch=None, deadline=None, objective="time", tensor_parallel=None,
                    pipeline_parallel=None, micro_batch=None, expert_parallel=None, context_parallel=None,
                    tokens=None, samples=None, epochs=1, precision=None, zero=None, recompute=None, pue=None,
                    network_gbs=None, finetune=None, lora_rank=None, lora_targets=None, inference=False,
                    concurrency=None, prompt_tokens=None, output_tokens=None, weights=None, kv_cache=None,
                    ttft_ms=None, tpot_ms=None, hwdb_files=(), allow_unmapped=False, check=False,
                    say=None) -> EstimateAnswer:
    """`sizing estimate SPEC` with the command's options by their parameter names (``loaded``: what
    ``load_estimate`` gave, when the caller already has it). ``check``: `--check` is asked for, which runs without
    a device. ``say``: told what a family device name was taken to mean (default stderr). SizingError, one line,
    for every refusal, in the order the command line gives them."""
    from ..common.errors import SizingError
    from ..model.lm import for_spec

    est, tune = loaded or load_estimate(spec, batch=batch, dtype=dtype, optimizer=optimizer, seq_len=seq_len,
                                        finetune=finetune, lora_rank=lora_rank, lora_targets=lora_targets,
                                        inference=inference, allow_unmapped=allow_unmapped)
    d = est.to_dict()
    lm = None if inference else for_spec(spec, est, allow_unmapped)     # serving works its figures out at the prompt
    if lm is not None:
        d["language_model"] = lm.to_dict()
    planner = {"--devices": devices, "--global-batch": global_batch, "--deadline": deadline,
               "--tensor-parallel": tensor_parallel, "--pipeline-parallel": pipeline_parallel,
               "--micro-batch": micro_batch, "--expert-parallel": expert_parallel,
               "--context-parallel": context_parallel, "--tokens": tokens,
               "--samples": samples, "--precision": precision,
               "--zero": zero, "--recompute": recompute, "--pue": pue, "--network-gbs": network_gbs,
               "--epochs": None if epochs == 1 else epochs, "--objective": None if objective == "time" else objective,
               "--inference": inference or None}
    serving = {"--concurrency": concurrency, "--prompt-tokens": prompt_tokens, "--output-tokens": output_tokens,
               "--weights": weights, "--kv-cache": kv_cache, "--ttft-ms": ttft_ms, "--tpot-ms": tpot_ms}
    if not inference and any(v is not None for v in serving.values()):
        raise SizingError(f"{', '.join(k for k, v in serving.items() if v is not None)}: serving options; add "
                          f"--inference (and --device)")
    if device is None:
        given = [name for name, value in planner.items() if value is not None]
        if given:
            raise SizingError(f"{', '.join(given)} {'describes' if len(given) == 1 else 'describe'} a prediction: "
                              f"name a --device")
        return EstimateAnswer(d)
    if check:
        raise SizingError("--check runs without --device (run `sizing check` separately)")
    training = [name for name, value in planner.items() if value is not None and name not in ("--devices",
                                                                                               "--inference")]
    if inference and training:
        raise SizingError(f"{', '.join(training)}: training options; serving (--inference) takes --devices and "
                          f"{', '.join(serving)}")
    if inference:
        pred, base, fig = _serve(spec, est, device, devices, hwdb_files, allow_unmapped, dtype, concurrency,
                                 prompt_tokens, output_tokens, weights, kv_cache, ttft_ms, tpot_ms, say)
        return EstimateAnswer({**base.to_dict(), "language_model": fig.to_dict(), "inference": pred}, "inference",
                              pred)
    from ..common.units import parse_duration
    from ..model.estimate import estimator
    from .workload import parse_count

    if devices is not None and deadline is not None:
        raise SizingError("give --devices or --deadline, not both (--deadline finds the device count)")
    pins = Pins(tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel, micro_batch=micro_batch,
                zero=zero, recompute=recompute, expert_parallel=expert_parallel, context_parallel=context_parallel)
    at = estimator(spec, allow_unmapped, finetune=tune, dtype=dtype, optimizer=optimizer, seq_len=seq_len)
    prediction = plan(at, device, hwdb_files, devices=devices,
                      global_batch=parse_count("--global-batch", global_batch) or batch,
                      samples=parse_count("--samples", samples), tokens=parse_count("--tokens", tokens),
                      epochs=epochs, precision=precision, pins=pins, objective=objective,
                      deadline_s=None if deadline is None else parse_duration("--deadline", deadline),
                      network_gbs=network_gbs, pue=pue, say=say)
    pred = prediction.to_dict()
    if lm is not None:
        from .calibration import shipped
        from .inference import lm_serving
        d["language_model"]["serving"] = lm_serving(lm, resolve_device(device, hwdb_files, say=lambda _: None)[0],
                                                    prediction.precision, prediction.factors,
                                                    shipped().serving_efficiency)
    return EstimateAnswer({**d, "prediction": pred}, "prediction", pred)


def _serve(spec, est, device, devices, hwdb_files, allow_unmapped, dtype, concurrency, prompt_tokens, output_tokens,
           weights, kv_cache, ttft_ms, tpot_ms, say) -> tuple:
    """`sizing estimate --inference`: (the serving model's prediction for a causal language model,
    sizing/predict/serving.py; the Estimate of one prompt's forward pass; the LMFigures at the prompt's length).
    A prompt and its output must fit the model's context (``served_prompt``)."""
    from ..common.errors import SizingError
    from ..model.lm import is_causal_lm
    from .serving import Request, served_prompt, serving_model

    if not is_causal_lm(est.graph):
        raise SizingError(f"--inference serves a causal language model (token ids in, causal attention); "
                          f"{est.graph.name} is not one: size its serving with `sizing quote --qps`")
    prompt, output, base, fig = served_prompt(spec, est, prompt_tokens, output_tokens, dtype, allow_unmapped)
    for name, ms in (("--ttft-ms", ttft_ms), ("--tpot-ms", tpot_ms)):
        if ms is not None and not 0 < ms < float("inf"):
            raise SizingError(f"{name}: must be a positive number of milliseconds, got {ms!r}")
    dtype_ = est.settings["dtype"]
    sixteen = dtype_ if dtype_ in ("bf16", "fp16") else "bf16"
    request = Request(concurrency or 1, prompt, output, weights or sixteen, kv_cache or sixteen,
                      ttft_s=None if ttft_ms is None else ttft_ms / 1e3,
                      tpot_s=None if tpot_ms is None else tpot_ms / 1e3)
    return plan_serve(serving_model(base, fig), device, request, hwdb_files, devices=devices, dtype=sixteen,
                      say=say).to_dict(), base, fig
