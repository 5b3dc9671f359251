"""Serving a language model (sizing/predict/serving.py): exact KV-cache and weight bytes against closed forms
from the config, the roofline by hand on a made-up device, continuous against static batching, the fewest
devices against a brute-force walk, the calibration, and the command line."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.common.errors import SizingError
from sizing.hardware.devices import Device, load_hwdb
from sizing.model.estimate import estimator
from sizing.model.lm import figures
from sizing.predict.calibration import shipped
from sizing.predict.published import fit_serving_efficiency, lm_model
from sizing.predict.serving import (Efficiency, Engine, Request, closed_loop_wait, plan_serving, predict_serving,
    serving_model,
    tensor_options)
from sizing.predict.setup import Factors

UNIT = Factors(compute_fraction=1.0, memory_fraction=1.0, framework_efficiency=1.0, network_gbs=50, overlap=0.9,
               pue=1.5)
ONE = Efficiency(1.0, 1.0)
LLAMA2_7B = "tests/data/hf/llama-2-7b.json"


def gpu(**kw) -> Device:
    fields = dict(id="testgpu", vendor="Test", model="T3", kind="gpu", memory_gb=80, memory_bw_gbs=2000,
                  peak_tflops={"fp32": 50, "bf16": 500, "fp8": 1000}, tdp_w=500, interconnect_gbs=400,
                  devices_per_node=8, sources={"record": "made up for tests"})
    return Device(**{**fields, **kw})


def config_model(path=LLAMA2_7B, prompt=512):
    def at(tokens):
        return estimator(path, seq_len=tokens, dtype="bf16")(1)
    est = at(prompt)
    return serving_model(est, figures(est, lambda tokens: at(tokens).totals.flops))


def test_kv_cache_and_weight_bytes_are_exact():
    """Llama 2 7B (config.json): KV per token = 2 (k, v) x 32 layers x 32 heads x 128 = 262,144 elements; the
    matrix weights are its 32 x (4 x 4096^2 + 3 x 4096 x 11008) + the 32000 x 4096 head, the rest the embedding
    and norms."""
    m = config_model()
    assert m.kv_bytes_per_token("bf16") == 2 * 32 * 4096 * 2 and m.kv_bytes_per_token("fp8") == 2 * 32 * 4096
    matrix = 32 * (4 * 4096 ** 2 + 3 * 4096 * 11008) + 32000 * 4096
    assert m.matrix_params == matrix
    other = 6_738_415_616 - matrix                                  # the published parameter count
    assert m.weight_bytes("bf16") == 2 * (matrix + other) + 4 * m.buffers
    groups = -(-matrix // 128)
    assert m.weight_bytes("int4") == -(-(matrix * 4 + groups * (16 + 4)) // 8) + 2 * other + 4 * m.buffers
    assert m.weight_bytes("fp8") == matrix + 2 * other + 4 * m.buffers


def test_latent_attention_caches_the_latent_as_the_deepseek_v2_paper_gives_it():
    """DeepSeek-V2 section 2.1 and table 1: MLA caches (d_c + d_h^R) l = (4 d_h + d_h / 2) l elements per token,
    d_c = kv_lora_rank = 512 and d_h^R = qk_rope_head_dim = 64: 576 per token and layer, read here from each
    config; bf16 2 bytes, fp8 1. Every tensor-parallel device holds the whole latent (it has no head axis to
    split), while Llama's heads split."""
    for name in ("deepseek-v2", "deepseek-v3", "deepseek-v2-lite"):
        conf = json.load(open(f"tests/data/hf/{name}.json"))
        per_layer = conf["kv_lora_rank"] + conf["qk_rope_head_dim"]
        assert per_layer == 576 == 4.5 * 128
        m = config_model(f"tests/data/hf/{name}.json", prompt=64)
        assert m.kv_bytes_per_token("bf16") == 2 * per_layer * conf["num_hidden_layers"]
        assert m.kv_bytes_per_token("fp8") == per_layer * conf["num_hidden_layers"]
        assert m.kv_bytes_per_device_token("bf16", 8) == m.kv_bytes_per_token("bf16")
    llama = config_model()
    assert llama.kv_bytes_per_device_token("bf16", 2) * 2 == llama.kv_bytes_per_token("bf16")


def test_latent_decode_scores_the_latent_with_absorbed_weights():
    """DeepSeek-V2-Lite, 27 layers of 16 heads: the graph's attention per (query, key) pair is 2 (d + dv) = 2 (192 +
    128) FLOPs per head plus 7 (scale, causal mask, softmax 5); decode with W_UK and W_UV absorbed scores each
    query against the 512 + 64 cached values and sums the 512 latent ones: 2 (576 + 512) + 7. One sequence on
    one device is memory bound: the weights its token routes to, and the cache read once, 576 x 27 x 2 bytes a
    position."""
    m = config_model("tests/data/hf/deepseek-v2-lite.json", prompt=256)
    assert m.per_pair_flops == 27 * 16 * (2 * (192 + 128) + 7)
    assert m.decode_flops(100) - m.decode_flops(99) == 27 * 16 * (2 * (576 + 512) + 7)
    one = predict_serving(m, Request(1, 256, 64, mode="static"), gpu(memory_gb=1000), UNIT, ONE, t=1)
    unread = (1 - m.routed_share(1)) * m.expert_params() * 2
    assert one.bound_decode == "memory"
    assert one.tpot_s == pytest.approx((m.weight_bytes("bf16") - unread + (256 + 32) * 576 * 27 * 2) / 2000e9
                                       + m.small_seconds(1, 2000e9, 0.0))
    assert one.kv_cache_bytes == (256 + 64) * 576 * 27 * 2


def test_cli_serves_deepseek_without_the_kv_warning():
    r = run_cli("tests/data/hf/deepseek-v2-lite.json", "--device", "h100-sxm", "--inference", "--prompt-tokens",
                "1024", "--output-tokens", "128", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "KV cache" not in r.stderr
    p = json.loads(r.stdout)["inference"]
    assert p["memory_bytes"]["kv_cache"] == (1024 + 128) * 576 * 27 * 2


LLAMA2_7B_SMALL = 32 * (4 * 4 * 4096 + 2 * 6 * 4096 + 4 * 11008 + 6 * 11008) + 4 * 4096 + (8 + 4 * 4096)


def test_decode_of_one_sequence_reads_the_weights_by_hand():
    """One sequence, 16-bit weights, one device: a decode step is memory bound, the weights, then the cache, then
    the ops that are not matrix products, each its own kernel reading and writing its activations: per layer
    two RMS norms and the rotary embeddings of q and k (d in, d out each), two residual adds (2 d in, d out), SiLU
    (f in, f out) and the gate product (2 f in, f out), the final norm and the embedding's gather (its int64 id
    and the row in, the row out), in bf16 (LLAMA2_7B_SMALL bytes a token, d 4096, f 11008)."""
    m = config_model()
    req = Request(1, 512, 64, "bf16", "bf16", mode="static")
    p = predict_serving(m, req, gpu(), UNIT, ONE, t=1)
    kv = m.kv_bytes_per_token("bf16")
    cache = (512 + 32) * kv
    assert p.bound_decode == "memory"
    assert p.tpot_s == pytest.approx((m.weight_bytes("bf16") + cache + LLAMA2_7B_SMALL) / 2000e9)
    assert p.kv_cache_bytes == (512 + 64) * kv
    linear = m.per_sequence_flops + m.per_token_flops * 512
    pairs = m.prefill_flops(512) - linear - m.per_pair_flops * 512 * 511 / 2     # causal: half the pairs run
    assert p.ttft_s == pytest.approx(max(linear / 500e12, m.weight_bytes("bf16") / 2000e9)     # its logits give
                                     + max(pairs / 500e12, 512 * kv / 2000e9) + 512 * LLAMA2_7B_SMALL / 2000e9)
    assert p.tokens_per_s == pytest.approx(64 / (p.ttft_s + 63 * p.tpot_s))


def test_no_kernel_runs_shorter_than_its_issue_time():
    """With a 5 us issue time, one sequence's decode step pays it for each of Llama 2 7B's 258 kernels that are not
    matrix products (8 a layer, the final norm, the embedding's gather), whose bytes take nanoseconds."""
    m = config_model()
    req = Request(1, 512, 64, "bf16", "bf16", mode="static")
    free, issued = (predict_serving(m, req, gpu(), replace(UNIT, launch_seconds=s), ONE, t=1) for s in (0, 5e-6))
    assert sum(k for k, _ in m.small_ops) == 32 * 8 + 2
    assert issued.tpot_s - free.tpot_s == pytest.approx(258 * 5e-6 - LLAMA2_7B_SMALL / 2000e9)


def test_a_step_runs_its_matrix_products_and_attention_at_their_own_rooflines():
    """512 sequences at 4096 tokens: the matrix products are compute bound (512 tokens against the weights) and
    attention memory bound (512 caches), one after the other: the step is the sum of the two, longer than the
    roofline of their totals."""
    m = config_model()
    req = Request(512, 4096, 64, "bf16", "bf16", mode="static")
    p = predict_serving(m, req, gpu(memory_gb=10 ** 4), UNIT, ONE, t=1)
    context = 4096 + 32
    gemm = 512 * m.per_token_flops / 500e12
    attention = 512 * context * m.kv_bytes_per_token("bf16") / 2000e9
    assert gemm > m.weight_bytes("bf16") / 2000e9 and attention > 512 * context * m.per_pair_flops / 500e12
    assert p.tpot_s == pytest.approx(gemm + attention + 512 * LLAMA2_7B_SMALL / 2000e9)
    assert p.tpot_s > max(512 * m.decode_flops(context) / 500e12,
                          (m.weight_bytes("bf16") + 512 * context * m.kv_bytes_per_token("bf16")) / 2000e9)


def test_an_engine_reading_kv_per_query_head_reads_the_cache_group_times():
    """Llama 3 70B (64 query heads over 8 key/value heads): a decode kernel run per query head (TensorRT-LLM before
    XQA) reads each cached key and value 8 times; the step, memory bound, costs exactly the 7 extra reads of the
    cache. Llama 2 7B (no grouping) reads it once either way."""
    m = config_model("tests/data/hf/llama-3-70b.json")
    per_head = Engine("old", kv_per_query_head=True)
    assert per_head.kv_reads(m) == 8 and Engine().kv_reads(m) == 1
    req = Request(8, 2048, 64, "bf16", "bf16", mode="static")
    new, old = (predict_serving(m, req, gpu(memory_gb=1000), UNIT, ONE, t=1, engine=e) for e in (Engine(), per_head))
    assert new.bound_decode == old.bound_decode == "memory"
    cache = 8 * (2048 + 32) * m.kv_bytes_per_token("bf16")
    assert old.tpot_s - new.tpot_s == pytest.approx(7 * cache / 2000e9)
    assert any("once per query head (8 times)" in a for a in old.assumptions)
    small = config_model()
    assert per_head.kv_reads(small) == 1


def test_serving_runs_name_their_engine(tmp_path):
    """TensorRT-LLM 0.5's rows read the cache per query head; NIM's do not; an engine the table does not define is
    an error naming the run."""
    from sizing.predict import calibration
    engines = {r.id: r.engine.kv_per_query_head for r in shipped().serving_runs}
    assert engines["trt05-llama70b-128-2048"] and not engines["nim-llama33-70b-5000-500-c5-tpot"]
    text = open(calibration.shipped_path()).read().replace("engine: nim18", "engine: nim99", 1)
    bad = tmp_path / "cal.yaml"
    bad.write_text(text)
    with pytest.raises(SizingError, match="engine must be one of trt05, trt061, nim18"):
        calibration.load(str(bad))


def test_continuous_batching_pays_the_prefills_between_decode_steps():
    """16 sequences decode while each of them is prefilled once per 128 output tokens: a request lasts its 127
    later steps and the 16 prefills in between; its first token comes after its prefill, the decode step in
    flight and the wait behind other prompts; TPOT is the rest over the 127 later tokens (as AIPerf and vLLM
    measure it). Alone, it waits for no prefill."""
    m = config_model()
    static = predict_serving(m, Request(16, 512, 128, mode="static"), gpu(), UNIT, ONE, t=1)
    cont = predict_serving(m, Request(16, 512, 128), gpu(), UNIT, ONE, t=1)
    one = predict_serving(m, Request(1, 512, 128, mode="static"), gpu(), UNIT, ONE, t=1)
    t_prefill = one.ttft_s
    request = 127 * static.tpot_s + 16 * t_prefill
    assert cont.tokens_per_s == pytest.approx(16 * 128 / request)
    wait = closed_loop_wait(16, t_prefill, request)
    assert 0 < wait and cont.ttft_s == pytest.approx(t_prefill + static.tpot_s + wait)
    assert cont.tpot_s == pytest.approx((request - cont.ttft_s) / 127)
    alone = predict_serving(m, Request(1, 512, 128), gpu(), UNIT, ONE, t=1)
    # alone: 127 steps and its prefill; the first token comes with the step after the prefill, 126 steps remain
    assert alone.ttft_s == pytest.approx(t_prefill + one.tpot_s)
    assert alone.tpot_s == pytest.approx(126 * one.tpot_s / 127)


@pytest.mark.parametrize("clients, service, think", [(5, 0.4, 10.0), (25, 0.4, 19.0), (50, 0.4, 29.0),
                                                     (10, 1.0, 20.0), (200, 0.05, 30.0)])
def test_closed_loop_wait_matches_a_simulated_closed_queue(clients, service, think):
    """An event simulation of the closed queue: each client thinks an exponential time of mean ``think``, then
    waits first-come first-served for a server busy ``service`` per prompt; its mean wait against the mean value
    analysis given the simulated cycle (think + service + wait), within 8%, at prefill loads up to 0.66 (NIM's
    published runs reach 0.64; near saturation the Bard-Schweitzer estimate runs low)."""
    import heapq
    import random
    rnd = random.Random(7)
    arrivals = [rnd.expovariate(1 / think) for _ in range(clients)]
    heapq.heapify(arrivals)
    free, waits = 0.0, []
    for _ in range(40000):
        arrived = heapq.heappop(arrivals)
        start = max(arrived, free)
        waits.append(start - arrived)
        free = start + service
        heapq.heappush(arrivals, free + rnd.expovariate(1 / think))
    simulated = sum(waits[8000:]) / len(waits[8000:])
    assert closed_loop_wait(clients, service, think + service + simulated) == pytest.approx(simulated, rel=0.08)
    assert closed_loop_wait(1, service, think) == 0


def test_quantised_weights_decode_faster_and_fp8_needs_fp8_matmuls():
    m = config_model()
    bf16 = predict_serving(m, Request(1, 512, 64, "bf16"), gpu(), UNIT, ONE, t=1)
    int4 = predict_serving(m, Request(1, 512, 64, "int4"), gpu(), UNIT, ONE, t=1)
    assert int4.tpot_s < bf16.tpot_s / 2 and int4.precision == "bf16"
    with pytest.raises(SizingError, match="--weights fp8: testgpu has no fp8 matmuls"):
        predict_serving(m, Request(1, 512, 64, "fp8"), gpu(peak_tflops={"fp32": 50, "bf16": 500}), UNIT, ONE, t=1)


def test_fewest_devices_equals_a_brute_force_walk():
    m = config_model()
    req = Request(256, 512, 128, tpot_s=0.03)
    dev = gpu(memory_gb=24)
    pred = plan_serving(m, req, dev, UNIT, ONE)
    walk = min(t * r for t in tensor_options(m, 8) for r in range(1, 257)
               if predict_serving(m, req, dev, UNIT, ONE, t, 1, r).meets)
    assert pred.devices == walk and pred.meets and pred.tpot_s <= 0.03


def test_a_concurrency_that_cannot_fit_says_so():
    with pytest.raises(SizingError, match="cannot be served on 1 testgpu: 100000 sequence.*KV cache"):
        plan_serving(config_model(), Request(10 ** 5, 4096, 512), gpu(memory_gb=24), UNIT, ONE, devices=1)
    with pytest.raises(SizingError, match="on any count of testgpu: even one sequence of 50000000 \\+ 1 tokens"):
        plan_serving(config_model(), Request(1, 5 * 10 ** 7, 1), gpu(memory_gb=24), UNIT, ONE)
    with pytest.raises(SizingError, match="the targets \\(TPOT 1 us\\) are not met") as e:
        plan_serving(config_model(), Request(4, 512, 64, tpot_s=1e-6), gpu(), UNIT, ONE)
    assert e.value.best.fits and not e.value.best.meets and e.value.best.tpot_s > 1e-6
    with pytest.raises(SizingError, match="needs [0-9]+ testgpu to serve 4096 sequences within TPOT 20 ms, more "
                                          "than the limit of 8") as e:
        plan_serving(config_model(), Request(4096, 512, 64, tpot_s=0.02), gpu(), UNIT, ONE, max_devices=8)
    assert e.value.best.meets and e.value.best.devices > 8
    with pytest.raises(SizingError, match="--concurrency: must be a positive integer"):
        Request(0, 1, 1)


def test_stored_serving_efficiency_is_the_fit_of_the_calibrate_rows():
    """The stored prefill and decode efficiencies are the fit of the calibrate rows, and the validate rows never
    enter it: doubled, the fit is the same."""
    from dataclasses import replace
    cal = shipped()
    assert {r.use for r in cal.serving_runs} == {"calibrate", "validate"}
    skewed = replace(cal, serving_runs=tuple(replace(r, value=2 * r.value) if r.use == "validate" else r
                                             for r in cal.serving_runs))
    fitted, stored = fit_serving_efficiency(skewed, load_hwdb(environ={})), cal.serving_efficiency
    assert (fitted.prefill, fitted.decode) == pytest.approx((stored.prefill, stored.decode), abs=5e-4)


# Calibration models (training runs and serving models) whose released config.json is in tests/data/hf. LLaMA 1 7B
# has Llama 2 7B's architecture (Touvron et al. 2023, Llama 2, section 2.2: only the context length and, for 34B and
# 70B, grouped-query attention changed); the graphs are compared at the calibration model's own sequence length.
HF_TWINS = {("runs", "llama1-65b"): "llama-65b.json", ("runs", "llama2-7b"): "llama-2-7b.json",
            ("runs", "llama1-7b"): "llama-2-7b.json", ("serving", "llama-7b"): "llama-2-7b.json",
            ("serving", "llama-3-70b"): "llama-3-70b.json"}


@pytest.mark.parametrize("kind, name", HF_TWINS)
def test_calibration_models_build_as_their_hf_configs(kind, name):
    """The graph a calibration model is predicted from is the one a user gets from the model's config.json: the
    same ops row by row (rotary embeddings, separate q/k/v projections, an untied head), the same exact params,
    FLOPs, backward FLOPs and memory."""
    from sizing.model.estimate import estimate_graph
    from sizing.model.graph import build
    from sizing.predict.published import run_estimator, transformer_spec

    cal = shipped()
    if kind == "runs":
        run = next(r for r in cal.runs if r.id == name)
        ours, seq = run_estimator(run)(1), run.transformer["seq_len"]
        user = estimator(f"tests/data/hf/{HF_TWINS[kind, name]}", seq_len=seq, dtype=run.dtype,
                         optimizer=run.optimizer)(1)
    else:
        import yaml

        from sizing.predict import calibration
        with open(calibration.__file__.replace(".py", ".yaml")) as f:
            model = yaml.safe_load(f)["serving"]["models"][name]
        ours = estimate_graph(build(transformer_spec(name, **model), {}, name, batch=1, dtype="bf16"))
        user = estimator(f"tests/data/hf/{HF_TWINS[kind, name]}", seq_len=model["seq_len"], dtype="bf16")(1)
    assert [(r.node.op, r.node.repeat, r.node.out.shape) for r in ours.layers] == \
        [(r.node.op, r.node.repeat, r.node.out.shape) for r in user.layers]
    assert "rotary_embedding" in {r.node.op for r in ours.layers}
    assert (ours.totals.params, ours.totals.flops, ours.totals.backward_flops) == \
        (user.totals.params, user.totals.flops, user.totals.backward_flops)
    assert ours.memory == user.memory


def run_cli(*args):
    return CliRunner().invoke(main, ["estimate", *map(str, args)])


def test_cli_inference_json():
    r = run_cli(LLAMA2_7B, "--device", "h100-sxm", "--inference", "--concurrency", "32", "--prompt-tokens", "1024",
                "--output-tokens", "256", "--weights", "fp8", "--kv-cache", "fp8", "--format", "json")
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["inference"]
    for key in ("ttft_s", "tpot_s", "tokens_per_s", "tokens_per_s_per_user", "requests_per_s", "max_concurrency",
                "fits"):
        assert key in p
    assert set(p["layout"]) == {"tensor_parallel", "pipeline_parallel", "expert_parallel", "replicas"}
    assert set(p["memory_bytes"]) == {"weights", "kv_cache", "activations", "total"}
    assert set(p["bound"]) == {"prefill", "decode"} and p["fits"] and p["devices"] == 1


def test_cli_inference_errors():
    def one_line(r, *fragments):
        assert r.exit_code == 2, r.output
        line, = r.stderr.splitlines()
        assert line.startswith("error: ") and all(f in line for f in fragments), line
    one_line(run_cli("resnet50", "--device", "h100-sxm", "--inference"), "serves a causal language model")
    one_line(run_cli(LLAMA2_7B, "--concurrency", "4"), "--concurrency", "add --inference")
    one_line(run_cli(LLAMA2_7B, "--device", "a100-sxm-80gb", "--inference", "--weights", "fp8"), "no fp8 matmuls",
             "use --weights int8 or int4")
    for weights in ("fp8", "int4"):     # a CPU runs none of them: no advice to try another format it cannot run
        r = run_cli(LLAMA2_7B, "--device", "epyc-9654", "--inference", "--weights", weights)
        one_line(r, f"--weights {weights}: epyc-9654 has no", "fp32", "pick a device")
        assert "use --weights" not in r.stderr
    one_line(run_cli(LLAMA2_7B, "--device", "l4", "--inference", "--concurrency", "100000", "--devices", "1"),
             "cannot be served on 1 l4")
    one_line(run_cli(LLAMA2_7B, "--device", "h100-sxm", "--inference", "--prompt-tokens", "4000", "--output-tokens",
                     "97"), "4,097 tokens", "context of 4,096", "--seq-len")     # max_position_embeddings 4096
    assert run_cli(LLAMA2_7B, "--device", "h100-sxm", "--inference", "--prompt-tokens", "4000", "--output-tokens",
                   "96").exit_code == 0


def test_served_model_shows_one_prompts_forward_pass():
    """--inference reports the forward pass of one prompt (the same counts `sizing estimate --seq-len P` gives), no
    backward, training step or training memory."""
    args = (LLAMA2_7B, "--device", "h100-sxm", "--inference", "--prompt-tokens", "300", "--output-tokens", "20")
    served = json.loads(run_cli(*args, "--format", "json").stdout)
    alone = json.loads(run_cli(LLAMA2_7B, "--seq-len", "300", "--format", "json").stdout)
    assert served["forward"] == alone["forward"] and served["seq_len"] == 300
    assert served["language_model"]["prefill_flops"] == alone["language_model"]["prefill_flops"]
    text = run_cli(*args).stdout
    assert "forward of batch 1" in text and "seq_len 300" in text
    for training in ("bwd FLOPs", "training step", "gradients", "training FLOPs/token"):
        assert training not in text


def quote(*args):
    return CliRunner().invoke(main, ["quote", LLAMA2_7B, *map(str, args)])


def test_quote_sizes_a_serving_fleet_in_whole_nodes():
    r = quote("--concurrency", "64", "--prompt-tokens", "1024", "--output-tokens", "256", "--tpot-ms", "40",
              "--candidates", "h100-sxm,a100-sxm-80gb", "--format", "json")
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)
    assert q["kind"] == "llm" and q["pick"] is not None
    keys = {a["key"] for a in q["assumptions"]}         # the serving model and its layout search, not training's
    assert {"as_model_llm", "as_search_llm"} <= keys and not keys & {"as_model", "as_search"}
    for o in q["options"]:
        assert o["count"] % o["devices_per_node"] == 0 and o["meets_target"] == (o["seconds"] <= 0.040)
    for lang in ("en", "ko"):
        md = quote("--concurrency", "64", "--prompt-tokens", "1024", "--candidates", "h100-sxm", "--lang", lang)
        assert md.exit_code == 0 and "{" not in md.stdout, md.output


def test_quote_serves_a_request_rate_by_littles_law():
    r = quote("--qps", "20", "--prompt-tokens", "512", "--output-tokens", "128", "--candidates", "h100-sxm",
              "--format", "json")
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)
    pick = q["options"][q["pick"]]
    assert pick["meets_target"] and pick["throughput"] >= 20 * 128 * (1 - 1e-9)        # output tokens/s


def test_quote_serving_errors():
    r = CliRunner().invoke(main, ["quote", "resnet50", "--concurrency", "4"])
    assert r.exit_code == 2 and "is not one: use --qps and --latency-ms" in r.stderr
    r = quote("--concurrency", "4", "--latency-ms", "10")
    assert r.exit_code == 2 and r.stderr.startswith("error: --latency-ms: ") and "takes no --latency-ms" in r.stderr
    r = quote("--concurrency", "4", "--tokens", "1e9", "--deadline", "1d")
    assert r.exit_code == 2 and r.stderr.startswith("error: --tokens, --deadline: a language model's serving")


def test_quote_says_why_a_device_cannot_serve():
    """A device is left out for what stops it: a TPOT target no count meets (with the closest figures), a
    sequence whose KV cache fits on no count, a fleet past --max-devices, weight-only int4 on a CPU without 16-bit
    matmuls (not 'no int4 peak': int4 weights run 16-bit matmuls)."""
    def excluded(*args):
        r = quote(*args, "--format", "json")
        assert r.exit_code == 0, r.output
        (ex,) = json.loads(r.stdout)["excluded"]
        return ex
    slow = excluded("--concurrency", "8", "--tpot-ms", "0.0001", "--candidates", "h100-sxm")
    assert slow["key"] == "ex_targets" and slow["params"]["tpot"] > 0.0001 / 1e3
    full = excluded("--concurrency", "1", "--prompt-tokens", "50000000", "--seq-len", "50000256", "--candidates", "l4")
    assert full["key"] == "ex_kv_no_fit" and "KV cache" in full["text"]
    many = excluded("--concurrency", "100000", "--prompt-tokens", "100000", "--seq-len", "100256", "--candidates", "l4",
                    "--max-devices", "8")
    assert many["key"] == "ex_too_many" and many["params"]["count"] > 8
    cpu = excluded("--concurrency", "8", "--weights", "int4", "--candidates", "xeon-8480")
    assert cpu["key"] == "ex_precision" and "no bf16 or fp16 peak" in cpu["text"]


def test_quote_leaves_out_a_fleet_past_max_devices():
    r = quote("--concurrency", "4096", "--tpot-ms", "20", "--candidates", "h100-sxm", "--max-devices", "8",
              "--format", "json")
    (ex,) = json.loads(r.stdout)["excluded"]
    assert ex["key"] == "ex_too_many" and ex["params"]["count"] > 8 and ex["params"]["max"] == 8


def test_quote_takes_concurrency_or_qps_not_both():
    r = quote("--concurrency", "8", "--qps", "3")
    assert r.exit_code == 2 and r.stderr.strip() == ("error: give --concurrency (requests in flight) or --qps "
                                                     "(requests per second), not both")


def test_moe_decode_reads_the_experts_its_tokens_route_to():
    """Qwen3-30B-A3B, 128 experts, 8 per token: one sequence's decode step reads 8/128 of the expert weights,
    64 sequences nearly all (1 - (1 - 8/128)^64 = 98.4%)."""
    m = config_model("tests/data/hf/qwen3-30b-a3b.json", prompt=256)
    assert m.routed_share(1) == pytest.approx(8 / 128)
    assert m.routed_share(64) == pytest.approx(1 - (1 - 8 / 128) ** 64)
    one = predict_serving(m, Request(1, 256, 64, mode="static"), gpu(), UNIT, ONE, t=1)
    dense_read = (m.weight_bytes("bf16") + (256 + 32) * m.kv_bytes_per_token("bf16")) / 2000e9
    unread = (1 - 8 / 128) * m.expert_params() * 2
    assert one.tpot_s == pytest.approx(dense_read - unread / 2000e9 + m.small_seconds(1, 2000e9, 0.0))


def test_ttft_under_load_carries_its_validated_error():
    """The caveat beside a TTFT under load states the validate rows' own median error (recomputed here from the
    published NIM rows, as benchmarks/bench_serving.py groups them), and only where several requests are in flight."""
    import statistics

    from sizing.predict.published import compare_serving
    from sizing.predict.serving import TTFT_UNDER_LOAD_ERROR
    cal, db = shipped(), load_hwdb(environ={})
    rows = [r for r in cal.serving_runs if r.use == "validate" and r.published == "ttft_ms"
            and r.mode == "continuous" and r.concurrency > 1]
    assert len(rows) >= 10
    median = statistics.median(compare_serving(r, cal, db).error for r in rows)
    assert round(median, 2) == round(TTFT_UNDER_LOAD_ERROR, 2)
    notes = {c: json.loads(run_cli(LLAMA2_7B, "--device", "h100-sxm", "--inference", "--concurrency", c,
                                   "--prompt-tokens", "512", "--output-tokens", "64", "--format", "json").stdout)
             ["inference"]["assumptions"] for c in (1, 8)}
    caveat = f"a median {-TTFT_UNDER_LOAD_ERROR:.0%} low"
    assert not any(caveat in n for n in notes[1]) and any(caveat in n for n in notes[8])


def test_training_options_are_refused_when_serving():
    """--inference sizes serving: a training option (a pinned tensor-parallel degree, a ZeRO stage, --precision,
    a token budget) is not silently dropped but refused in one line naming it and what serving takes."""
    r = run_cli(LLAMA2_7B, "--device", "h100-sxm", "--inference", "--tensor-parallel", "2", "--precision", "fp8")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert r.stderr.startswith("error: --tensor-parallel, --precision: training options; serving (--inference) "
                               "takes --devices and --concurrency")
