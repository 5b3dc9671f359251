"""Serving a causal language model: the steady state of continuous batching (and static batches, as older
benchmarks ran them), with quantized weights, an fp8 KV cache, tensor and pipeline parallelism and replicas.

Per replica of t x p devices (tensor parallel t inside a node, p pipeline stages), with c sequences in flight at
an average context L (prompt P plus half the O output tokens), by the roofline (Pope et al. 2022, "Efficiently
Scaling Transformer Inference", section 2) taken kernel family by kernel family, as they run one after another
(the matrix products' roofline, then attention's, then each other op's; as training's layer rooflines are summed):
    decode step T_d = max(c c1 / (t peak), W / (t bw)) + max(c c2' L / (t peak), c L kv_t / bw)
                      + the tensor-parallel all-reduces of every row-parallel layer (c tokens each)
                      + S(c), summed over the p stages
    prefill     T_p = max((c0 + c1 P) / (t peak), W / (t bw)) + max(A(P) / (t peak), P kv_t / bw) + its
                      all-reduces (P tokens each) + S(P), over the stages
    S(n)        = sum over the ops that are not matrix products (norms, residual adds, activations, rotary
                  embeddings, the embedding's gather), each a kernel: max(n b / bw, launch), b its activation
                  bytes per token, launch the time to issue one kernel (calibration defaults launch_us, 5 us;
                  sizing/predict/roofline.py launch_bound: no kernel runs shorter), whole on each device
where c0, c1, c2 are the graph's exact per-prompt, per-token and per-pair forward FLOPs and A(P) the causal
pairs' (sizing/model/lm.py), W
the weight bytes of the format (a mixture of experts' decode step reads only the experts its c tokens route to,
``routed_share``), kv_t the KV-cache bytes per token on each device (the heads' split t ways, a latent
attention's latent whole on each) and c2' decode's per-pair FLOPs (latent attention's with absorbed weights:
``Model.decode_flops``). Weight-only int8 / int4 add their
dequantisation (2 FLOPs per weight per pass at the vector peak); fp8 weights run fp8 matmuls and need a device
with them. With continuous batching every request is prefilled once (its logits give the first token) and decoded
O - 1 times, so a request lasts (O - 1) T_d + c T_p (its steps and the c prefills they wait through), output
tokens/s = c O / that; its time to first token (TTFT) = T_p + T_d (the engine iteration after its prefill's:
NIM's published TTFT at one user is the prefill and one decode step at every prompt length) + the wait for the
prefills ahead (``closed_loop_wait``: a closed queue, as at fixed concurrency); time per output token (TPOT) is
the rest of the request over its O - 1 later tokens, (request - TTFT) / (O - 1), as AIPerf and vLLM's benchmark
measure it (their TTFT + (O - 1) ITL is the request). A static batch of c runs one prefill of c prompts, whose
logits give the first tokens (TTFT = T_p), then O - 1 steps. Prefill times are divided by the prefill
efficiency and decode steps by the decode efficiency (``Efficiency``; S(n), a count of bytes and issue times,
is not), both fitted on published serving runs
(sizing/predict/calibration.yaml ``serving``), apart from training's. What an engine's kernels do is a stated fact
(``Engine``): a decode kernel run per query head reads a grouped-query model's cache once per query head (the
published runs say which engine ran them); a user's prediction assumes a current engine, which reads it once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..common.errors import SizingError
from ..common.units import duration, iec
from ..model.graph import DTYPES
from ..model.lm import KV_ITEMSIZE
from ..model.ops import REGISTRY, numel
from .comm import INTER_HOP_SECONDS, INTRA_HOP_SECONDS, interconnect_bps, ring_allreduce_seconds
from .fit import capacity, divisors
from .roofline import peaks, row_parallel
from .search import attention_heads
from .setup import Factors

# bits per weight of a matrix product, and the quantisation group (None: no scales). A quantised group adds an
# fp16 scale and a zero point of the weight's width (AWQ, Lin et al. 2023; GPTQ, Frantar et al. 2022: group 128).
WEIGHTS = {"bf16": (16, None), "fp16": (16, None), "fp8": (8, None), "int8": (8, 128), "int4": (4, 128)}
KV_CACHE = ("bf16", "fp16", "fp8")
MODES = ("continuous", "static")
ACTIVATION_BYTES = 2            # activations and all-reduce messages in 16 bits
# The median error (predicted / published - 1) of the time to first token with several requests in flight, over
# the validate rows that publish it (NVIDIA NIM 1.8's tables in calibration.yaml; benchmarks/bench_serving.py's
# "ttft_ms under load" line, recomputed by tests/test_serving.py). No cause found yet explains it, so it is no
# correction: the estimate states it beside every TTFT under load, as a lower bound's caveat.
TTFT_UNDER_LOAD_ERROR = -0.776


@dataclass(frozen=True)
class Efficiency:
    """Achieved over modelled speed of each serving phase, fitted on published serving runs (sizing/predict/
    published.py ``fit_serving_efficiency``): ``prefill``, the compute-bound pass over the prompts (GEMMs, fused
    attention), and ``decode``, the memory-bound step (weights and KV cache streamed by GEMV and decode-attention
    kernels). Two kernel families, two figures: one fitted figure for both left the long-context decode rows
    15-26% slow and the short ones fast at once."""
    prefill: float
    decode: float

    def to_dict(self) -> dict:
        return {"prefill": self.prefill, "decode": self.decode}


@dataclass(frozen=True)
class Request:
    """What the deployment serves: ``concurrency`` sequences in flight over all replicas, each a prompt of
    ``prompt`` tokens answered with ``output`` tokens; optional targets in seconds."""
    concurrency: int
    prompt: int
    output: int
    weights: str = "bf16"
    kv_cache: str = "bf16"
    mode: str = "continuous"
    ttft_s: float | None = None
    tpot_s: float | None = None

    def __post_init__(self):
        for name in ("concurrency", "prompt", "output"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SizingError(f"--{'concurrency' if name == 'concurrency' else name + '-tokens'}: must be a "
                                  f"positive integer, got {v!r}")
        if self.weights not in WEIGHTS:
            raise SizingError(f"--weights: one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        if self.kv_cache not in KV_CACHE:
            raise SizingError(f"--kv-cache: one of {', '.join(KV_CACHE)}, got {self.kv_cache!r}")
        if self.mode not in MODES:
            raise SizingError(f"serving mode: one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass(frozen=True)
class Model:
    """What serving needs of a causal LM: exact FLOPs (sizing/model/lm.py's fit), weight bytes per format, KV
    bytes per token, the all-reduce message widths per token, the largest layer's working bytes per token."""
    name: str
    per_token_flops: float          # c1
    per_pair_flops: float           # c2
    per_sequence_flops: float       # c0
    matrix_params: int              # weights of matrix products (quantised)
    other_params: int               # embeddings, norms (kept in 16 bits)
    buffers: int
    kv_elems_per_token: int
    allreduce_widths: tuple         # per row-parallel layer copy: output width (one all-reduce per token each)
    heads: tuple                    # (query heads, key/value heads) per attention layer
    working_bytes_per_token: int
    experts: tuple = ()             # (experts, top_k, expert weights) per mixture-of-experts layer copy
    kv_replicated_elems: int = 0    # of kv_elems_per_token: latents, whole on every tensor-parallel device
    absorbed_pair_flops: int = 0    # decode's extra FLOPs per (query, key) pair from absorbed latent attention
    small_ops: tuple = ()           # (kernels, bytes moved per token) per row that is not a matrix product

    def small_seconds(self, tokens: int, bw: float, launch: float) -> float:
        """Time of the ops that are not matrix products (norms, residual adds, activations, the embedding's
        gather) over ``tokens`` tokens, each op its own kernel: its bytes at ``bw`` but no shorter than its issue
        time ``launch`` (sizing/predict/roofline.py ``launch_bound``); held whole on every tensor-parallel device."""
        return sum(k * max(tokens * b / bw, launch) for k, b in self.small_ops)

    def prefill_flops(self, tokens: int) -> float:
        return self.per_sequence_flops + self.per_token_flops * tokens + self.per_pair_flops * tokens * tokens

    def prefill_work(self, tokens: int) -> float:
        """The prefill FLOPs a fused causal kernel runs: the count less the (q, k) pairs above the diagonal,
        c2 T (T - 1) / 2 (the count is dense; FlashAttention skips those blocks)."""
        return self.prefill_flops(tokens) - self.per_pair_flops * tokens * (tokens - 1) / 2

    def decode_flops(self, context: float) -> float:
        """c1 + c2' L, c2' the per-pair FLOPs of decode: the graph's, and for latent attention scores and values
        over the cached latent with the up-projection absorbed (``absorbed_pair_flops``)."""
        return self.per_token_flops + (self.per_pair_flops + self.absorbed_pair_flops) * context

    def weight_bytes(self, fmt: str) -> int:
        bits, group = WEIGHTS[fmt]
        scales = 0 if group is None else -(-self.matrix_params // group) * (2 * 8 + bits)
        return -(-(self.matrix_params * bits + scales) // 8) + 2 * self.other_params + 4 * self.buffers

    def kv_bytes_per_token(self, fmt: str) -> int:
        return self.kv_elems_per_token * KV_ITEMSIZE[fmt]

    def kv_bytes_per_device_token(self, fmt: str, t: int) -> Fraction:
        """KV-cache bytes per token on each of ``t`` tensor-parallel devices: the heads' keys and values split t
        ways, a latent whole on each (one per token, shared by every head, it cannot be split by head, so tensor
        parallelism keeps a copy per device: the reason SGLang v0.4 brought data-parallel attention for DeepSeek;
        blog.rijuyuezhu.top/posts/2e93e0b4, 'SGLang Meets DeepSeek', on SGLang's MLA under TP)."""
        shared = self.kv_replicated_elems
        return (Fraction(self.kv_elems_per_token - shared, t) + shared) * KV_ITEMSIZE[fmt]

    def routed_share(self, tokens: float) -> float:
        """Share of the expert weights a step of ``tokens`` tokens reads: each layer's experts that at least one
        token routes to, n (1 - (1 - k / n)^tokens) of n with independent uniform routing, over all the experts'
        weights (1 for a dense model)."""
        total = sum(w for _, _, w in self.experts)
        if not total:
            return 1.0
        return sum(w * (1 - (1 - k / n) ** tokens) for n, k, w in self.experts) / total

    def expert_params(self) -> int:
        return sum(w for _, _, w in self.experts)


@dataclass(frozen=True)
class Engine:
    """What a serving engine's kernels do that the model's time depends on (a stated fact per engine, never a
    fitted constant). ``kv_per_query_head``: its decode attention reads each key/value head's cache once for every
    query head of the group (a masked multi-head kernel run per query head, as TensorRT-LLM before its XQA kernel
    in v0.8: NVIDIA's XQA blog gives 1.9-2.4x Llama-70B throughput at 128/2048 tokens from reading it once per
    group); otherwise once per key/value head (XQA, FlashInfer, FlashDecoding: vLLM, SGLang, TensorRT-LLM >= 0.8)."""
    name: str = "current"
    kv_per_query_head: bool = False

    def kv_reads(self, model: "Model") -> float:
        """How many times a decode step reads each cached key and value: the query heads per key/value head
        (over all attention layers) for a per-query-head kernel, else 1."""
        if not self.kv_per_query_head or not model.heads:
            return 1.0
        return sum(q for q, _ in model.heads) / sum(kv for _, kv in model.heads)


CURRENT_ENGINE = Engine()


def serving_model(est, fig) -> Model:
    """The serving figures of ``est`` (a causal LM at batch 1) and its ``fig`` (sizing.model.lm.LMFigures)."""
    from ..model.lm import kv_cache_elems_per_token, latent_attention

    matrix = sum(r.cost.params for r in est.layers if REGISTRY[r.node.op].matrix)
    tokens = numel(est.graph.input.shape)
    widths = tuple(r.node.out.shape[-1] for r in est.layers if row_parallel(est, r) for _ in range(r.node.repeat))
    heads = tuple(attention_heads(est))
    working = max((r.cost.bytes_read + r.cost.bytes_written) // r.node.repeat for r in est.layers) // tokens
    experts = tuple((r.node.kwargs["num_experts"], r.node.kwargs["top_k"],
                     (r.cost.params - r.node.kwargs["num_experts"] * r.node.in_types[0].shape[-1] * r.node.repeat)
                     // r.node.repeat)
                    for r in est.layers if r.node.op == "mixture_of_experts" for _ in range(r.node.repeat))
    mla = [m for m in map(lambda n: latent_attention(est.graph, n), est.graph.nodes) if m is not None]
    # absorbed decode scores q against latent + rope per head and sums the latent (not d and dv wide)
    absorbed = sum(2 * m.heads * (m.cached - m.d + m.latent - m.dv) * m.repeat for m in mla)
    # ops besides matrix products, each a kernel: its bytes per token less the weights it reads whole (a norm's
    # scale; a gather reads only its rows)
    small = tuple((r.node.repeat, (r.cost.bytes_read + r.cost.bytes_written - (0 if REGISTRY[r.node.op].takes_ids
                                   else r.cost.params * DTYPES[est.settings["dtype"]])) // (r.node.repeat * tokens))
                  for r in est.layers if not REGISTRY[r.node.op].matrix and (r.cost.bytes_read or r.cost.bytes_written))
    return Model(est.graph.name, float(fig.per_token_flops), float(fig.per_pair_flops),
                 float(fig.per_sequence_flops), matrix, est.totals.params - matrix, est.totals.buffers,
                 kv_cache_elems_per_token(est.graph), widths, heads, working, experts,
                 sum(m.cached * m.repeat for m in mla), absorbed, small)


OUTPUT_TOKENS = 256       # --output-tokens when not given


def served_prompt(spec, est, prompt_tokens: int | None, output_tokens: int | None, dtype: str | None = None,
                  allow_unmapped: bool = False) -> tuple:
    """(prompt length, output length, the Estimate of one prompt's forward pass at batch 1, its LMFigures) for
    serving ``spec``, whose estimate ``est`` is at the context it serves (``--seq-len`` or the spec's: a config's
    max_position_embeddings). The prompt defaults to that context; a prompt and its output given past it are
    refused, as engines refuse longer requests (vLLM's max_model_len)."""
    from ..model.estimate import estimator
    from ..model.lm import figures

    context = est.graph.input.shape[1]
    prompt, output = prompt_tokens or context, output_tokens or OUTPUT_TOKENS
    if prompt_tokens is not None and prompt + output > context:
        raise SizingError(f"--prompt-tokens {prompt:,} + --output-tokens {output:,} = {prompt + output:,} tokens: more "
                          f"than {est.graph.name}'s context of {context:,} tokens; give at most {context:,} in all, or "
                          f"--seq-len N to serve a longer context")

    def at_length(tokens):
        return estimator(spec, allow_unmapped, dtype=dtype, seq_len=tokens)(1)
    base = at_length(prompt)
    return prompt, output, base, figures(base, lambda tokens: at_length(tokens).totals.flops)


@dataclass(frozen=True)
class ServingPrediction:
    device: str
    devices: int
    tensor_parallel: int
    pipeline_parallel: int
    replicas: int
    request: Request
    precision: str                  # the matmuls' precision
    ttft_s: float
    tpot_s: float
    tokens_per_s: float             # output tokens/s over all sequences
    requests_per_s: float
    max_concurrency: int            # sequences whose KV cache fits beside the weights, over all replicas
    weights_bytes: int              # per device
    kv_cache_bytes: int
    activation_bytes: int
    device_memory_bytes: int | None
    fits: bool
    meets: bool
    bound_prefill: str
    bound_decode: str
    factors: Factors
    efficiency: Efficiency
    assumptions: tuple[str, ...] = ()

    @property
    def memory_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    def to_dict(self) -> dict:
        r = self.request
        return {
            "device": self.device, "devices": self.devices, "precision": self.precision, "weights": r.weights,
            "kv_cache": r.kv_cache, "mode": r.mode, "concurrency": r.concurrency, "prompt_tokens": r.prompt,
            "output_tokens": r.output, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
            "tokens_per_s": self.tokens_per_s, "tokens_per_s_per_user": 1 / self.tpot_s,
            "requests_per_s": self.requests_per_s, "max_concurrency": self.max_concurrency, "fits": self.fits,
            "meets_targets": self.meets, "targets": {"ttft_s": r.ttft_s, "tpot_s": r.tpot_s},
            "layout": {"tensor_parallel": self.tensor_parallel, "pipeline_parallel": self.pipeline_parallel,
                       "expert_parallel": 1, "replicas": self.replicas},
            "memory_bytes": {"weights": self.weights_bytes, "kv_cache": self.kv_cache_bytes,
                             "activations": self.activation_bytes, "total": self.memory_bytes},
            "device_memory_bytes": self.device_memory_bytes,
            "bound": {"prefill": self.bound_prefill, "decode": self.bound_decode},
            "serving_efficiency": self.efficiency.to_dict(), "assumptions": list(self.assumptions)}


def closed_loop_wait(clients: int, service: float, cycle: float) -> float:
    """Mean wait of a prompt for the prefills ahead of it when ``clients`` requests are in flight, each prefilled
    for ``service`` and lasting ``cycle`` in all, its client sending the next when it ends: a closed queue (a
    benchmark or a user base at fixed concurrency). Mean value analysis (Reiser and Lavenberg 1980) with the
    Bard-Schweitzer estimate Q(c - 1) = (c - 1) / c Q(c) and a fixed-length prefill's residual S / 2 gives
    R = S (1 + k X R - k U / 2) with X = c / cycle, U = X S, k = (c - 1) / c, so the wait R - S is the
    Pollaczek-Khinchine (M/D/1) wait at the load of the other c - 1 requests:
        W = rho S / (2 (1 - rho)),  rho = (c - 1) S / cycle  (< 1: the cycle holds every request's prefill)."""
    rho = (clients - 1) * service / cycle
    return rho * service / (2 * (1 - rho))


def matmul_precision(device, weights: str, dtype: str) -> str:
    """fp8 weights run fp8 matmuls; 16-bit and weight-only int8 / int4 run at the model's 16-bit dtype (bf16 where
    the device lacks fp16's peak). SizingError, one line, on a device without them, suggesting only formats it
    can run (a CPU of fp32 and fp64 peaks serves none: this model has no fp32 serving path)."""
    sixteen = next((p for p in (dtype, "bf16", "fp16") if p in ("bf16", "fp16") and p in device.peak_tflops), None)
    if weights == "fp8" and "fp8" in device.peak_tflops:
        return "fp8"
    if weights != "fp8" and sixteen:
        return sixteen
    has = ", ".join(device.precisions())
    if weights == "fp8" and sixteen:
        raise SizingError(f"--weights fp8: {device.id} has no fp8 matmuls (it has {has}); use --weights int8 or "
                          f"int4 (weight-only) or bf16")
    need = "fp8" if weights == "fp8" else "16-bit"
    raise SizingError(f"--weights {weights}: {device.id} has no {need} matmuls to run it (it has {has}), and "
                      f"serving runs fp8 or 16-bit ones (weight-only int8 / int4 as 16-bit); pick a device that has "
                      f"them (`sizing hw list --sort bf16`)")


def _phase(flops, dequant, nbytes, mat, vec, bw, factors) -> tuple[float, str]:
    compute = flops / (mat * factors.compute_fraction) + dequant / (vec * factors.compute_fraction)
    memory = nbytes / (bw * factors.memory_fraction)
    return max(compute, memory), "compute" if compute >= memory else "memory"


def predict_serving(model: Model, request: Request, device, factors: Factors, efficiency: Efficiency, t: int,
                    p: int = 1, replicas: int = 1, dtype: str = "bf16", node_size: int | None = None,
                    engine: Engine = CURRENT_ENGINE) -> ServingPrediction:
    """The steady state of ``request`` on ``replicas`` x (tensor ``t`` x pipeline ``p``) ``device``s (module
    docstring)."""
    precision = matmul_precision(device, request.weights, dtype)
    mat, _ = peaks(device, precision)
    _, vec = peaks(device, "fp32" if "fp32" in device.peak_tflops else precision)
    bw = device.memory_bw_bytes_per_s
    node = node_size or device.devices_per_node
    intra = interconnect_bps(device, factors.network_gbs * 1e9)
    weights = model.weight_bytes(request.weights)
    kv_tok = model.kv_bytes_per_device_token(request.kv_cache, t)         # per device
    dequant_flops = 2 * model.matrix_params if WEIGHTS[request.weights][1] else 0
    c = -(-request.concurrency // replicas)
    context = request.prompt + request.output / 2

    def allreduce(tokens):
        """Inference all-reduces are small: a one-shot kernel (TensorRT-LLM's custom all-reduce, NCCL's NVLS) has
        every rank read the others' buffers over NVLink with two synchronisations, so the latency is two hops
        whatever t, and the bytes those of a ring."""
        if t == 1:
            return 0.0
        return sum(2 * INTRA_HOP_SECONDS + ring_allreduce_seconds(tokens * w * ACTIVATION_BYTES, t, intra)
                   for w in model.allreduce_widths)
    hops = (p - 1) * (INTER_HOP_SECONDS if t * p > node else INTRA_HOP_SECONDS)
    seqs = c if request.mode == "static" else 1                 # prompts one prefill runs
    prefill_tokens, linear = seqs * request.prompt, model.per_sequence_flops + model.per_token_flops * request.prompt
    launch, small_bw = factors.launch_seconds, bw * factors.memory_fraction

    def step(linear_flops, weight_bytes, pair_flops, cache_bytes):
        """The matrix products (weights against their FLOPs) and attention (the cache against its FLOPs) in
        turn, each at its own roofline, as the kernels run one after the other."""
        t_w, bound_w = _phase(linear_flops / t, dequant_flops / t, weight_bytes / t, mat, vec, bw, factors)
        t_a, bound_a = _phase(pair_flops / t, 0, cache_bytes, mat, vec, bw, factors)
        return t_w + t_a, bound_w if t_w >= t_a else bound_a
    t_p, bound_p = step(seqs * linear, weights, seqs * (model.prefill_work(request.prompt) - linear),
                        prefill_tokens * kv_tok)
    t_p = (t_p + allreduce(prefill_tokens) + hops) / efficiency.prefill \
        + model.small_seconds(prefill_tokens, small_bw, launch)
    unread = (1 - model.routed_share(c)) * model.expert_params() * WEIGHTS[request.weights][0] / 8
    t_d, bound_d = step(c * model.per_token_flops, weights - unread,
                        c * (model.decode_flops(context) - model.per_token_flops),
                        c * context * kv_tok * engine.kv_reads(model))
    t_d = (t_d + allreduce(c) + hops) / efficiency.decode + model.small_seconds(c, small_bw, launch)
    o = request.output
    if request.mode == "static":
        ttft, tpot = t_p, t_d
        tokens_per_s = c * o / (t_p + (o - 1) * t_d) * replicas
    else:
        lasts = (o - 1) * t_d + c * t_p               # a request: its later steps and the c prefills in between
        tokens_per_s = c * o / lasts * replicas
        ttft = t_p + t_d + closed_loop_wait(c, t_p, lasts)
        tpot = (lasts - ttft) / (o - 1) if o > 1 else t_d
    per_device = t * p
    w_dev = -(-weights // per_device)
    kv_dev = math.ceil(c * (request.prompt + request.output) * kv_tok / p)
    act = -(-model.working_bytes_per_token * max(request.prompt, c) // t)
    cap = capacity(device, factors)                # what an engine may fill of each device's memory
    fits = cap is None or w_dev + kv_dev + act <= cap
    room = None if cap is None else cap * per_device - weights - act * t
    per_seq = (request.prompt + request.output) * kv_tok * t        # over the replica's devices
    max_c = 10 ** 9 if room is None else max(0, room // per_seq) * replicas
    meets = fits and (request.ttft_s is None or ttft <= request.ttft_s) and \
        (request.tpot_s is None or tpot <= request.tpot_s)
    bits, group = WEIGHTS[request.weights]
    notes = (f"serving efficiency {efficiency.prefill:.3f} for prefill, {efficiency.decode:.3f} for decode, fitted on "
             f"published serving runs (apart from training's)",
             f"weights {request.weights}" + (f" ({bits}-bit, groups of {group} with an fp16 scale and a zero point;"
                                              f" embeddings and norms in 16 bits)" if group else "")
             + f"; KV cache {request.kv_cache}; matmuls in {precision}",
             f"{request.mode} batching: {c} sequence(s) per replica at an average context of {context:g} tokens"
             + ("; each request's prefill interleaves with the decode steps (a request lasts (O - 1) T_d + c T_p)"
                if request.mode == "continuous" else ""),
             *([f"time to first token with {c} requests in flight is a lower bound: NVIDIA NIM 1.8's published "
                f"runs under load measure more (this model comes out a median {-TTFT_UNDER_LOAD_ERROR:.0%} low "
                f"against them; benchmarks/bench_serving.py)"] if request.mode == "continuous" and c > 1 else []),
             "matrix products, attention and each other op (norms, residual adds, activations) at its own roofline,"
             " one after another" + (f"; no kernel shorter than its {launch * 1e6:g} us issue time" if launch else ""),
             *factors.notes,
             *([f"weights, KV cache and activations fill at most {factors.usable_memory:.0%} of each device's memory "
                f"(vLLM's default --gpu-memory-utilization)"] if factors.usable_memory < 1 and cap else []),
             *([f"engine {engine.name}: decode attention reads each key/value head's cache once per query head "
                f"({engine.kv_reads(model):g} times)"] if engine.kv_per_query_head else
               ["decode attention reads each key/value head's cache once for its query heads (XQA, FlashInfer, "
                "FlashDecoding kernels)"] if any(q != kv for q, kv in model.heads) else []))
    return ServingPrediction(
        device=device.id, devices=per_device * replicas, tensor_parallel=t, pipeline_parallel=p, replicas=replicas,
        request=request, precision=precision, ttft_s=ttft, tpot_s=tpot, tokens_per_s=tokens_per_s,
        requests_per_s=tokens_per_s / request.output, max_concurrency=int(max_c), weights_bytes=w_dev,
        kv_cache_bytes=kv_dev, activation_bytes=act, device_memory_bytes=device.memory_bytes, fits=fits, meets=meets,
        bound_prefill=bound_p, bound_decode=bound_d, factors=factors, efficiency=efficiency, assumptions=notes)


class Unservable(SizingError):
    """No deployment serves the request: ``best`` is the one that came closest (the largest replica shape on one
    replica), whose ``fits`` says whether the KV cache was the reason, else the targets."""

    def __init__(self, message: str, best: ServingPrediction):
        super().__init__(message)
        self.best = best


def tensor_options(model: Model, node: int) -> list[int]:
    """Tensor-parallel degrees that split the heads (key/value heads split or copied), within a node."""
    return [t for t in divisors(node) if all(q % t == 0 and (kv % t == 0 or t % kv == 0) for q, kv in model.heads)]


def _shortfall(pred: ServingPrediction, request: Request) -> float:
    """How far ``pred`` misses the request's targets: its largest TTFT or TPOT over its target."""
    return max(v / target for v, target in ((pred.ttft_s, request.ttft_s), (pred.tpot_s, request.tpot_s))
               if target is not None)


def _targets(request: Request) -> str:
    """The latency targets given, as durations ('TTFT 500 ms, TPOT 50 ms')."""
    given = [(name, v) for name, v in (("TTFT", request.ttft_s), ("TPOT", request.tpot_s)) if v is not None]
    return ", ".join(f"{name} {duration(v)}" for name, v in given)


def plan_serving(model: Model, request: Request, device, factors: Factors, efficiency: Efficiency, *,
                 devices: int | None = None, dtype: str = "bf16", max_devices: int = 131072) -> ServingPrediction:
    """The deployment: on ``devices`` (the best replica shape that fits them), else the fewest devices whose
    replicas hold the concurrency's KV caches and meet the TTFT / TPOT targets: tensor parallel within a node,
    pipeline stages across nodes when a node is not enough, then replicas. Unservable, one line, when none."""
    node = device.devices_per_node
    shapes = [(t, 1) for t in tensor_options(model, node)]
    shapes += [(shapes[-1][0] if shapes else 1, p) for p in range(2, 65)]

    def on(t, p, r):
        return predict_serving(model, request, device, factors, efficiency, t, p, r, dtype)
    best = over = None                      # over: the fewest devices that serve it, past max_devices
    for t, p in shapes:
        if devices is not None:
            if devices % (t * p):
                continue
            pred = on(t, p, devices // (t * p))
            if pred.fits and (best is None or (pred.meets, pred.tokens_per_s) > (best.meets, best.tokens_per_s)):
                best = pred
            continue
        lo, hi = 1, max(1, request.concurrency)
        if not on(t, p, hi).meets:
            continue
        while lo < hi:                      # fewest replicas of this shape that fit and meet the targets
            mid = (lo + hi) // 2
            if on(t, p, mid).meets:
                hi = mid
            else:
                lo = mid + 1
        pred = on(t, p, lo)
        if pred.devices <= max_devices and (best is None or pred.devices < best.devices):
            best = pred
        elif pred.devices > max_devices and (over is None or pred.devices < over.devices):
            over = pred
        if best is not None and t * p >= best.devices:
            break
    if best is None and over is not None:
        raise Unservable(f"{model.name} needs {over.devices} {device.id} to serve {request.concurrency} sequences"
                         f"{' within ' + _targets(request) if _targets(request) else ''}, more than the limit of "
                         f"{max_devices}", over)
    if best is None:
        if devices is not None:
            t = max(x for x in tensor_options(model, node) if devices % x == 0)
            one = on(t, max(1, devices // t) if devices // t <= 64 else 1, 1)
            many = f"{request.concurrency} sequence(s) of {request.prompt} + {request.output} tokens take"
        else:                               # every shape with one sequence a replica: the fastest it gets
            tried = [on(t, p, max(1, request.concurrency)) for t, p in shapes]
            one = min((q for q in tried if q.fits), key=lambda q: _shortfall(q, request), default=tried[-1])
            many = f"even one sequence of {request.prompt} + {request.output} tokens takes"
        what = (f"{many} {iec(one.kv_cache_bytes)} of KV cache per device beside {iec(one.weights_bytes)} of "
                f"weights" if not one.fits else
                f"the targets ({_targets(request)}) are not met: TTFT {duration(one.ttft_s)}, TPOT "
                f"{duration(one.tpot_s)} at best")
        where = f"on {devices} {device.id}" if devices is not None else f"on any count of {device.id}"
        raise Unservable(f"{model.name} cannot be served {where}: {what}; each {device.id} has "
                         f"{iec(device.memory_bytes or 0)} (try --weights int4, --kv-cache fp8, a lower "
                         f"--concurrency or more devices)", one)
    return best
