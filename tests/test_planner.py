"""The planner (sizing/predict/search.py): the layout search, its pins, its errors, the deadline search, and the
activation memory it plans with against Korthikanti et al. 2022's published formulas.

Independent routes: the paper's closed forms (activation bytes per layer as its section 4 derives them, evaluated
for its Table 3 models) against what the graph's own kept tensors add up to; every pinned layout planned alone
against the unpinned search (the search must never lose to a layout in its space); a walk over device counts
against the deadline search."""
from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.common.errors import SizingError
from sizing.hardware.devices import Device, load_hwdb
from sizing.model.estimate import estimate_graph
from sizing.model.graph import build
from sizing.predict.fit import device_memory
from sizing.predict.published import transformer_spec
from sizing.predict.search import Pins, default_global_batch, device_counts, search
from sizing.predict.setup import Factors, Layout
from sizing.predict.workload import Workload

UNIT = Factors(compute_fraction=1.0, memory_fraction=1.0, framework_efficiency=1.0, network_gbs=50, overlap=0.9,
               pue=1.5)
WORK = Workload(dtype="bf16", optimizer="adamw", tokens=10 ** 10)


def gpu(**kw) -> Device:
    fields = dict(id="testgpu", vendor="Test", model="T2", kind="gpu", memory_gb=16, memory_bw_gbs=2000,
                  peak_tflops={"fp32": 50, "bf16": 400}, tdp_w=500, interconnect_gbs=400, devices_per_node=8,
                  sources={"record": "made up for tests"})
    return Device(**{**fields, **kw})


def model(layers=8, d=512, heads=8, vocab=8000, seq=512, **kw):
    spec = transformer_spec("t", layers, d, heads, 4 * d, vocab, seq, **kw)

    @lru_cache(maxsize=None)
    def at(batch):
        return estimate_graph(build(spec, {}, "test", batch=batch, dtype="bf16", optimizer="adamw"))
    return at


# ---------------------------------------------------------------- Korthikanti et al. 2022

# Table 3 of the paper: attention heads a, hidden size h, layers L, tensor parallel t, pipeline parallel p
TABLE3 = {"22B": (64, 6144, 48, 8, 1), "175B": (96, 12288, 96, 8, 8), "530B": (128, 20480, 105, 8, 35),
          "1T": (160, 25600, 128, 8, 64)}


def paper_activation_bytes(a, h, L, t, s, recompute, sp):
    """Section 4 of the paper, 16-bit activations, micro-batch 1, the first pipeline stage holding p micro-batches
    of L/p layers (so L layers in all): sbh(10 + 24/t + 5as/(ht)) per layer with tensor parallelism,
    sbh(34 + 5as/h)/t with sequence parallelism; selective recomputation drops the 5as/h score terms."""
    sbh = s * h
    scores = 0 if recompute == "selective" else 5 * a * s / h
    per_layer = (34 + scores) / t if sp else 10 + (24 + scores) / t
    return sbh * L * per_layer


@pytest.mark.parametrize("name", TABLE3)
@pytest.mark.parametrize("recompute", ["none", "selective"])
@pytest.mark.parametrize("sp", [False, True])
def test_activation_memory_matches_korthikanti(name, recompute, sp):
    """GPT-3-style models (dropout 0.1, unfused attention as Megatron-LM ran it) at sequence 2048: the activations
    the planner puts on the first stage are within 10% of the paper's figures, with and without selective
    recomputation and sequence parallelism. The paper's formula covers the transformer layers; the input
    embedding's dropout, which it counts apart (section 4.3), is left out of the graph here."""
    a, h, L, t, p = TABLE3[name]
    spec = transformer_spec(name, L, h, a, 4 * h, 51200, 2048, dropout=0.1, embedding_dropout=0)
    est = estimate_graph(build(spec, {}, "k", batch=1, dtype="fp16"))
    layout = Layout(t, p, 1, 1, 2 * p, 1, recompute, sp, 1, fused_attention=False)
    ours = device_memory(est, layout).activations
    assert ours == pytest.approx(paper_activation_bytes(a, h, L, t, 2048, recompute, sp), rel=0.10)


def tinyllama(seq=64):
    """TinyLlama 1.1B from its config.json, as a user imports it: 22 layers of separate q, k (4 kv heads), v and
    o projections around scaled_dot_product_attention (32 heads), SwiGLU, hidden 2048."""
    from sizing.model.estimate import estimator
    return estimator("tests/data/hf/tinyllama-1.1b.json", seq_len=seq, dtype="bf16")(1)


def test_an_imported_llama_all_reduces_twice_a_layer():
    """Megatron-LM's layout (Shoeybi et al. 2019, section 3): q, k, v and the MLP's gate and up projections are
    column-parallel, the attention output and down projections row-parallel, so tensor parallelism all-reduces
    2 x B x T x hidden values a layer (22 layers, T 64, bf16), however narrow the grouped-query k and v are."""
    from sizing.predict.roofline import row_parallel_bytes, tensor_parallel_roles
    est = tinyllama()
    rows, split = tensor_parallel_roles(est)
    assert {name.split(".")[-1] for name in rows} == {"o_proj", "down_proj"}
    assert {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"} <= {name.split(".")[-1] for name in split}
    assert row_parallel_bytes(est) == 2 * 22 * 64 * 2048 * 2


def test_fused_attention_keeps_no_scores_of_an_imported_model():
    """FlashAttention keeps no score matrix for scaled_dot_product_attention either: unfused, TinyLlama keeps
    B x heads x T x T bf16 probabilities more per layer (32 heads, T 64, 22 layers, no dropout), and selective
    recomputation drops them again."""
    est = tinyllama()
    fused = device_memory(est, Layout(micro_batch=1)).activations
    unfused = device_memory(est, Layout(micro_batch=1, fused_attention=False)).activations
    selective = device_memory(est, Layout(micro_batch=1, fused_attention=False, recompute="selective")).activations
    assert unfused - fused == 22 * 32 * 64 * 64 * 2
    assert selective == fused


def test_fused_attention_keeps_no_scores_and_selective_changes_nothing_then():
    est = model(seq=1024, dropout=0.1)(1)
    fused = device_memory(est, Layout(micro_batch=1)).activations
    unfused = device_memory(est, Layout(micro_batch=1, fused_attention=False)).activations
    selective = device_memory(est, Layout(micro_batch=1, fused_attention=False, recompute="selective")).activations
    assert selective == fused < unfused


# ---------------------------------------------------------------- the search

def test_the_search_never_loses_to_a_layout_in_its_space():
    """Every (tensor, pipeline) pair pinned and planned alone is no faster than the unpinned search."""
    at, dev = model(), gpu(memory_gb=2)
    best = search(at, WORK, dev, UNIT, devices=16, global_batch=64)
    tried = 0
    for t in (1, 2, 4, 8):
        for p in (1, 2, 4, 8):
            try:
                pinned = search(at, WORK, dev, UNIT, Pins(tensor_parallel=t, pipeline_parallel=p), devices=16,
                                global_batch=64)
            except SizingError:
                continue
            tried += 1
            assert best.step_seconds <= pinned.step_seconds * (1 + 1e-12)
            assert (pinned.tensor_parallel, pinned.pipeline_parallel) == (t, p)
    assert tried >= 4 and best.fits


def test_layout_arithmetic_and_alternatives():
    pred = search(model(), WORK, gpu(), UNIT, devices=16, global_batch=64)
    assert pred.tensor_parallel * pred.pipeline_parallel * pred.data_parallel == 16
    assert pred.micro_batch * pred.gradient_accumulation * pred.data_parallel == pred.global_batch == 64
    shapes = [(a.tensor_parallel, a.pipeline_parallel, a.interleave, a.zero, a.recompute) for a in pred.alternatives]
    assert len(shapes) == len(set(shapes)) and pred.alternatives
    assert [a.step_seconds for a in pred.alternatives] == sorted(a.step_seconds for a in pred.alternatives)
    assert all(a.step_seconds >= pred.step_seconds for a in pred.alternatives)


def test_memory_pressure_turns_on_sharding_and_recomputation():
    at = model(layers=8, d=1024, heads=8, seq=2048)
    roomy = search(at, WORK, gpu(memory_gb=80), UNIT, devices=8, global_batch=64)
    tight = search(at, WORK, gpu(memory_gb=1.2), UNIT, devices=8, global_batch=64)
    assert tight.fits and tight.memory.total <= 1.2e9 < roomy.memory.total
    assert (tight.zero, tight.recompute, tight.tensor_parallel, tight.pipeline_parallel) != \
        (roomy.zero, roomy.recompute, roomy.tensor_parallel, roomy.pipeline_parallel)
    assert any("memory" in line for line in tight.pruned)


def test_a_framework_without_zero_3_or_pipelines_is_planned_within_what_it_has():
    """A software profile's limits (sizing/predict/calibration.yaml ``software``) bound the search: under memory
    pressure the unlimited search shards weights (ZeRO-3) or pipelines; without them it must find another way
    (tensor parallelism, recomputation) and is never faster than the unlimited search."""
    at = model(layers=8, d=1024, heads=8, seq=2048)
    dev = gpu(memory_gb=1.2)
    free = search(at, WORK, dev, UNIT, devices=8, global_batch=64)
    low = search(at, WORK, dev, UNIT, Pins(max_zero=1), devices=8, global_batch=64)
    flat = search(at, WORK, dev, UNIT, Pins(pipeline=False), devices=8, global_batch=64)
    assert low.zero <= 1 and all(a["zero"] <= 1 for a in (x.summary() for x in low.alternatives))
    assert flat.pipeline_parallel == 1 and all(a.pipeline_parallel == 1 for a in flat.alternatives)
    assert free.step_seconds <= min(low.step_seconds, flat.step_seconds)


def test_pins_fix_their_dimension_and_impossible_pins_say_what_is_valid():
    at = model()
    pred = search(at, WORK, gpu(), UNIT, Pins(zero=3, recompute="full", micro_batch=2), devices=8, global_batch=64)
    assert (pred.zero, pred.recompute, pred.micro_batch) == (3, "full", 2)
    with pytest.raises(SizingError, match="--tensor-parallel 16: more than the 8 devices of a node"):
        search(at, WORK, gpu(), UNIT, Pins(tensor_parallel=16), devices=16, global_batch=64)
    with pytest.raises(SizingError, match="--pipeline-parallel 9: more stages than the 8 repeated layers"):
        search(at, WORK, gpu(), UNIT, Pins(pipeline_parallel=9), devices=9, global_batch=64)
    with pytest.raises(SizingError, match="does not fit on 1 testgpu"):
        search(at, WORK, gpu(memory_gb=0.01), UNIT, devices=1, global_batch=64)
    with pytest.raises(SizingError, match="--zero"):
        Pins(zero=4)


def test_the_global_batch_is_kept_and_split_unevenly_with_a_note():
    """60 samples over 8 replicas: each runs up to 8, so the step is the step of 64 while the model FLOPs, the
    steps per epoch and the MFU are those of 60."""
    at = model()
    exact = search(at, WORK, gpu(), UNIT, devices=8, global_batch=64)
    assert exact.global_batch == 64 and not any("unevenly" in a for a in exact.assumptions)
    pins = Pins(tensor_parallel=1, pipeline_parallel=1)
    odd = search(at, WORK, gpu(), UNIT, pins, devices=8, global_batch=60)
    full = search(at, WORK, gpu(), UNIT, replace(pins, micro_batch=odd.micro_batch), devices=8, global_batch=64)
    assert odd.global_batch == 60 and any("split unevenly" in a and "up to 8 samples" in a for a in odd.assumptions)
    assert odd.step_seconds == pytest.approx(full.step_seconds)
    assert odd.model_flops_per_step * 64 == full.model_flops_per_step * 60
    assert odd.mfu == pytest.approx(full.mfu * 60 / 64)
    samples = -(-WORK.tokens // 512)                 # sequences of 512 tokens
    assert odd.steps_per_epoch == -(-samples // 60) and full.steps_per_epoch == -(-samples // 64)


def test_default_global_batch_rule():
    b, note = default_global_batch(model(seq=2048)(1))
    assert b == 2 ** 22 // 2048 and "set --global-batch" in note
    assert default_global_batch(model(seq=2048)(1), devices=32768)[0] == 4096      # one sequence per 8 devices
    cnn = estimate_graph(build({"input": [16], "layers": [{"op": "linear", "out_features": 4}]}, {}, "t"))
    assert default_global_batch(cnn)[0] == 256


def test_deadline_finds_the_fewest_devices_that_meet_it():
    """Walk every count the planner buys: the first whose best layout meets the deadline is the answer."""
    at, dev = model(), gpu()
    fast = search(at, WORK, dev, UNIT, devices=1, global_batch=256)
    deadline = fast.total_seconds / 5
    pred = search(at, WORK, dev, UNIT, deadline_s=deadline, global_batch=256)
    walk = next(c for c in device_counts(8, 4096)
                if search(at, WORK, dev, UNIT, devices=c, global_batch=256).total_seconds <= deadline)
    assert pred.devices == walk and pred.total_seconds <= deadline


def test_cost_objective_may_use_fewer_devices():
    at = model(layers=4, d=256, heads=4, seq=256)
    fast = search(at, WORK, gpu(), UNIT, devices=64, global_batch=64)
    cheap = search(at, WORK, gpu(), UNIT, devices=64, global_batch=64, objective="cost")
    assert cheap.devices <= 64
    assert cheap.step_seconds * cheap.devices <= fast.step_seconds * fast.devices * (1 + 1e-12)


def test_cli_plans_a_70b_model_on_8192_gpus():
    """The case that used to answer 'does not fit on any number of h100-sxm'."""
    r = CliRunner().invoke(main, ["estimate", "tests/data/hf/llama-3-70b.json", "--device", "h100-sxm", "--devices",
                                  "8192", "--tokens", "15e12", "--seq-len", "8192", "--dtype", "bf16", "--format",
                                  "json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["prediction"]
    assert p["fits"] and p["devices"] == 8192 and p["tensor_parallel"] * p["pipeline_parallel"] > 1
    assert p["alternatives"] and all("layout" in a for a in p["alternatives"])


def test_cli_pins_and_global_batch():
    r = CliRunner().invoke(main, ["estimate", "gpt2_small", "--device", "h100-sxm", "--devices", "16", "--tokens",
                                  "1e9", "--global-batch", "256", "--tensor-parallel", "2", "--recompute", "full",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["prediction"]
    assert (p["tensor_parallel"], p["recompute"], p["global_batch"]) == (2, "full", 256)
    db = load_hwdb(environ={})
    assert p["device_memory_bytes"] == db["h100-sxm"].memory_bytes


# ---------------------------------------------------------------- expert parallelism

def moe_model(experts=8, top_k=2, d=256, ffn=512, layers=4, seq=256):
    spec = {"name": "moe", "input": {"shape": ["$seq_len"], "dtype": "int64"}, "defaults": {"seq_len": seq},
            "blocks": {"layer": {"layers": [
                {"op": "rmsnorm", "name": "n1"},
                {"op": "multihead_attention", "name": "attn", "num_heads": 4, "causal": True, "bias": False},
                {"op": "add", "name": "r1", "inputs": ["attn", "input"]},
                {"op": "rmsnorm", "name": "n2"},
                {"op": "mixture_of_experts", "name": "moe", "num_experts": experts, "top_k": top_k,
                 "intermediate_size": ffn},
                {"op": "add", "name": "r2", "inputs": ["moe", "r1"]}]}},
            "layers": [{"op": "embedding", "name": "wte", "num_embeddings": 1000, "embedding_dim": d},
                       {"block": "layer", "name": "h", "repeat": layers}, {"op": "linear", "out_features": 1000}]}

    @lru_cache(maxsize=None)
    def at(batch):
        return estimate_graph(build(spec, {}, "test", batch=batch, dtype="bf16", optimizer="adamw"))
    return at


def test_expert_parallelism_splits_the_experts_and_pays_all_to_alls():
    est = moe_model()(2)
    experts = sum(r.cost.params - 8 * 256 * r.node.repeat for r in est.layers if r.node.op == "mixture_of_experts")
    one = device_memory(est, Layout(data_parallel=8, micro_batch=2))
    four = device_memory(est, Layout(data_parallel=8, micro_batch=2, expert_parallel=4))
    assert one.weights - four.weights == pytest.approx(2 * experts * 3 / 4, abs=4)     # bf16: 3/4 of them leave
    work = Workload(dtype="bf16", optimizer="adamw", tokens=10 ** 9)
    plain = search(moe_model(), work, gpu(), UNIT, Pins(expert_parallel=1, micro_batch=2, tensor_parallel=1,
                                                        pipeline_parallel=1), devices=8, global_batch=64)
    split = search(moe_model(), work, gpu(), UNIT, Pins(expert_parallel=4, micro_batch=2, tensor_parallel=1,
                                                        pipeline_parallel=1), devices=8, global_batch=64)
    assert (plain.expert_parallel, split.expert_parallel) == (1, 4)
    # 2 all-to-alls forward and 2 backward per layer and micro-batch, of tokens x top_k x hidden x 3/4, over the
    # interconnect (4 expert ranks in the node of 8): split.tp_comm - plain.tp_comm
    routed = 2 * 256 * 2 * 256 * 2 * 3 / 4
    per_micro = 4 * 4 * (routed / 200e9 + 5e-6)
    assert split.tp_comm_seconds - plain.tp_comm_seconds == pytest.approx(per_micro * split.gradient_accumulation)
    with pytest.raises(SizingError, match="--expert-parallel 3 must divide the experts"):
        search(moe_model(), work, gpu(), UNIT, Pins(expert_parallel=3), devices=8, global_batch=64)


# ---------------------------------------------------------------- context parallelism

def test_context_parallelism_splits_the_tokens_and_passes_keys_round_a_ring():
    """A 32K-token sequence: context parallel 4 keeps a quarter of the activations and does a quarter of the work
    on each device (weights read whole); its keys and values go round a ring of 4; pins are checked."""
    at = model(layers=4, d=512, heads=8, seq=32768)
    est = at(1)
    one = device_memory(est, Layout(micro_batch=1))
    four = device_memory(est, Layout(micro_batch=1, context_parallel=4, data_parallel=1))
    assert four.activations == pytest.approx(one.activations / 4, rel=1e-6)
    work = Workload(dtype="bf16", optimizer="adamw", tokens=10 ** 9)
    plain = search(at, work, gpu(memory_gb=80), UNIT, Pins(context_parallel=1, tensor_parallel=1,
                                                           pipeline_parallel=1, micro_batch=1), devices=4,
                   global_batch=4)
    split = search(at, work, gpu(memory_gb=80), UNIT, Pins(context_parallel=4, tensor_parallel=1,
                                                           pipeline_parallel=1, micro_batch=1), devices=4,
                   global_batch=4)
    assert (plain.context_parallel, split.context_parallel, split.data_parallel) == (1, 4, 1)
    mm = [(a, b) for a, b, row in zip(plain.layers, split.layers, est.layers) if row.node.op == "linear"]
    assert mm and all(b.flops == -(-a.flops // 4) for a, b in mm)
    best = search(at, work, gpu(memory_gb=1), UNIT, devices=4, global_batch=4)
    without = search(at, work, gpu(memory_gb=1), UNIT, Pins(context_parallel=1), devices=4, global_batch=4)
    assert best.fits and best.context_parallel > 1 and best.step_seconds < without.step_seconds
    with pytest.raises(SizingError, match="--context-parallel 3: must divide the 32768 tokens"):
        search(at, work, gpu(), UNIT, Pins(context_parallel=3), devices=3, global_batch=3)
    assert search(model(seq=512), work, gpu(), UNIT, devices=8, global_batch=64).context_parallel == 1


def test_a_device_without_an_interconnect_figure_says_so():
    """No 'interconnect - GB/s': a record without the figure talks over the network, and the line says that."""
    pred = search(model(), WORK, gpu(interconnect_gbs=None), UNIT, devices=16, global_batch=64)
    lines = [a for a in pred.assumptions if "network" in a and "GB/s per device each way" in a]
    assert lines and lines[0].startswith("no interconnect figure (devices talk over the network)")
    assert not any("interconnect - GB/s" in a or "interconnect None" in a for a in pred.assumptions)


@pytest.mark.parametrize("config, layers_before", [("gemma-2-2b.json", 2), ("deepseek-v2-lite.json", 1),
                                                   ("gemma-3-1b.json", 2), ("llama-2-7b.json", 1)])
def test_every_decoder_layer_is_a_pipeline_unit(config, layers_before):
    """A pipeline splits every decoder layer, folded into a repeat or not: Gemma 2 alternates local and global
    layers (none fold), Gemma 3 puts a global layer after every five local ones, DeepSeek-V2-Lite's first layer
    is dense; the units are the config's num_hidden_layers, and only the embedding (and Gemma's normalizer) come
    before them."""
    from sizing.model.estimate import estimator
    from sizing.predict.fit import stages
    path = f"tests/data/hf/{config}"
    with open(path) as f:
        layers = json.load(f)["num_hidden_layers"]
    s = stages(estimator(path)(1))
    assert s.units == layers and len(s.before) == layers_before


def test_gemma_2_pipelines():
    """Gemma 2's unfolded layers were no pipeline units: --pipeline-parallel 2 was refused ("0 repeated layers")."""
    r = CliRunner().invoke(main, ["estimate", "tests/data/hf/gemma-2-2b.json", "--device", "a100-sxm-80gb",
                                  "--devices", "2", "--pipeline-parallel", "2", "--tokens", "1e8", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["prediction"]["pipeline_parallel"] == 2
