"""Fine-tuning (sizing/model/finetune.py): LoRA and QLoRA against PEFT's printed counts and the QLoRA paper's
claims, a frozen base's gradients, optimizer state, kept activations and backward FLOPs by hand."""
from __future__ import annotations

import json

import numpy
import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.common.errors import SizingError
from sizing.hardware.devices import load_hwdb
from sizing.model.estimate import estimate_graph, estimator, finetuned, load_graph
from sizing.model.finetune import NF4_BITS, apply
from sizing.model.graph import build
from sizing.predict.calibration import shipped
from sizing.predict.search import search
from sizing.predict.workload import Workload

HF = "tests/data/hf/"


def tuned(path, method, rank=None, targets=None, **sizes):
    tune = (method, rank, targets)
    return finetuned(estimate_graph(load_graph(HF + path, finetune=tune, **sizes)), tune)


def test_peft_counts_for_llama_2_7b():
    """PEFT's README (LoRA on meta-llama/Llama-2-7b-hf, r=8, q_proj and v_proj):
    'trainable params: 4,194,304 || all params: 6,742,609,920'; all-linear at r=16 is r (in + out) summed over
    the seven projections of 32 layers (PEFT's LoRA layer shapes)."""
    est = tuned("llama-2-7b.json", "lora", 8, "q_proj,v_proj", seq_len=16)
    assert (est.trainable_params, est.totals.params) == (4_194_304, 6_742_609_920)
    per_layer = 4 * (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096)
    assert tuned("llama-2-7b.json", "lora", 16, "all-linear", seq_len=16).trainable_params == 16 * 32 * per_layer


def test_a_frozen_base_has_no_gradients_or_optimizer_state():
    est = tuned("llama-2-7b.json", "lora", 8, "q_proj,v_proj", seq_len=16)
    assert est.settings["dtype"] == "fp16"                          # the config's torch_dtype
    adapters = 4_194_304
    assert est.memory.gradients == 2 * adapters and est.memory.optimizer == 12 * adapters
    assert est.memory.weights == 2 * est.totals.params


def test_frozen_products_keep_no_input_and_skip_their_weight_gradient():
    """Two linear layers. The first frozen: it has no backward at all (no weight gradient, and the model input
    needs none) and keeps nothing, while the trainable second keeps its input. The second frozen: it computes only
    its input gradient (2 N in out FLOPs) and keeps nothing of its own."""
    def spec(first, second):
        return {"input": [64], "defaults": {"batch": 4},
                "layers": [{"op": "linear", "name": "a", "out_features": 32, "bias": False, "trainable": first},
                           {"op": "linear", "name": "b", "out_features": 16, "bias": False, "trainable": second}]}
    both = estimate_graph(build(spec(True, True), {}, "t"))
    head = estimate_graph(build(spec(False, True), {}, "t"))
    base = estimate_graph(build(spec(True, False), {}, "t"))
    n = 4
    a, b = (r for r in head.layers)
    assert head.input_kept == 0 and a.cost.backward_flops == 0
    assert a.cost.saved_bytes == n * 32 * 4                         # a's output, kept because b trains
    fb = next(r for r in base.layers if r.node.name == "b")
    assert fb.cost.backward_flops == 2 * n * 32 * 16                 # dx of b only
    assert next(r for r in base.layers if r.node.name == "a").cost.saved_bytes == 0
    assert both.input_kept == n * 64 * 4


def test_qlora_weights_are_nf4_and_its_claims_hold():
    """QLoRA (Dettmers et al. 2023): 4-bit NF4 with double quantization, 0.127 bits more per parameter; a 65B
    model fine-tunes on one 48 GB GPU and a 33B one on one 24 GB GPU (r = 64 on every linear layer, the paper's
    setting; sequence 512, gradient accumulation to a batch of 16)."""
    est = tuned("llama-65b.json", "qlora", 64, seq_len=512)
    head = 32000 * 8192
    frozen = sum(r.cost.params for r in est.layers if r.node.op == "linear" and not r.node.trainable) - head
    assert est.memory.weights == -(-int(frozen * NF4_BITS) // 8) + (est.totals.params - frozen) * 2
    assert est.memory.optimizer == 0 and any("optimizer state" in w and "paged memory" in w
                                             for w in est.graph.warnings)      # said, not silently left out
    db = load_hwdb(environ={})
    for config, device in (("llama-65b.json", "rtx-a6000"), ("llama-30b.json", "rtx-4090")):
        dev = db[device]
        at = estimator(HF + config, finetune=("qlora", 64, None), seq_len=512)
        work = Workload(dtype="fp16", optimizer="adamw", tokens=10 ** 8)
        pred = search(at, work, dev, shipped().factors(dev, "fp16", db), devices=1, global_batch=16)
        assert pred.fits and pred.memory.total <= dev.memory_bytes, config
        with pytest.raises(SizingError, match="does not fit"):          # full fine-tuning does not
            search(estimator(HF + config, seq_len=512), work, dev, shipped().factors(dev, "fp16", db), devices=1,
                   global_batch=16)


def test_bad_fine_tuning_input():
    with pytest.raises(SizingError, match="'qproj' is not a linear layer of the model; did you mean 'q_proj'"):
        load_graph(HF + "llama-2-7b.json", finetune=("lora", 8, "qproj"))
    with pytest.raises(SizingError, match="--lora-rank: a positive integer"):
        apply({"layers": []}, "lora", 0)
    with pytest.raises(SizingError, match="go with --finetune lora or qlora"):
        apply({"layers": []}, "full", 8)


def test_cli_finetune():
    r = CliRunner().invoke(main, ["estimate", HF + "llama-2-7b.json", "--finetune", "lora", "--lora-rank", "8",
                                  "--lora-targets", "q_proj,v_proj", "--seq-len", "128", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["trainable_params"] == 4_194_304
    r = CliRunner().invoke(main, ["estimate", HF + "llama-2-7b.json", "--lora-rank", "8"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --lora-rank and --lora-targets go with --finetune")


def test_quote_fine_tunes_on_one_consumer_card():
    """A 7B model: QLoRA on one 24 GB card is quoted; full fine-tuning needs several of them (a pipeline), past
    --max-devices 1, so nothing is picked."""
    args = ["quote", HF + "llama-2-7b.json", "--tokens", "1e7", "--seq-len", "1024", "--global-batch", "16",
            "--deadline", "7d", "--candidates", "rtx-4090", "--format", "json", "--max-devices", "1"]
    q = json.loads(CliRunner().invoke(main, args + ["--finetune", "qlora"]).stdout)
    pick = q["options"][q["pick"]]                          # the pick is the index of an option
    assert (pick["device"], pick["count"], pick["meets_target"]) == ("rtx-4090", 1, True)
    full = CliRunner().invoke(main, args)
    assert full.exit_code == 0 and json.loads(full.stdout)["pick"] is None


def test_quote_task_names_the_fine_tuning():
    """The quote says what is fine-tuned: method, rank, targets and PEFT's trainable count (4,194,304 of Llama-2-7b
    + adapters for r=8 on q_proj, v_proj); a training quote without --finetune says nothing of it."""
    args = ["quote", HF + "llama-2-7b.json", "--tokens", "1e7", "--seq-len", "1024", "--deadline", "7d",
            "--candidates", "h100-sxm"]
    tuned = args + ["--finetune", "lora", "--lora-targets", "q_proj,v_proj"]
    w = json.loads(CliRunner().invoke(main, tuned + ["--format", "json"]).stdout)["workload"]
    assert w["finetune"] == {"method": "lora", "rank": 8, "targets": "q_proj,v_proj", "trained_params": 4_194_304,
                             "params": 6_738_415_616 + 4_194_304}
    task = next(line for line in CliRunner().invoke(main, tuned).stdout.splitlines() if line.startswith("| Task"))
    assert "LoRA rank 8 on q\\_proj,v\\_proj: 4,194,304 of 6,742,609,920 params trained" in task  # Markdown-escaped
    plain = json.loads(CliRunner().invoke(main, args + ["--format", "json"]).stdout)["workload"]
    assert "finetune" not in plain


# ---------------------------------------------------------------- mixture-of-experts models

def config(path):
    with open(HF + path) as f:
        return json.load(f)


def peft_moe_count(path, r, attention=True, experts=True, router=True):
    """What PEFT's print_trainable_parameters() counts for LoRA on a transformers 4.x MoE model (Qwen3MoeMLP /
    MixtralBlockSparseTop2MLP experts: one nn.Linear per projection and expert; the router an nn.Linear), from
    the config: r (in + out) per adapted linear, summed over q, k, v, o, every expert's three projections and the
    router, per layer."""
    c = config(path)
    h, layers = c["hidden_size"], c["num_hidden_layers"]
    d = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    n = c.get("num_experts") or c["num_local_experts"]
    f = c.get("moe_intermediate_size") or c["intermediate_size"]
    per_layer = (attention * ((h + q) + 2 * (h + kv) + (q + h)) + experts * n * (2 * (h + f) + (f + h))
                 + router * (h + n))
    return r * layers * per_layer


@pytest.mark.parametrize("path,names", [("qwen3-30b-a3b.json", "gate_proj,up_proj,down_proj"),
                                        ("mixtral-8x7b-v0.1.json", "w1,w2,w3")])
@pytest.mark.parametrize("r", [8, 16])
def test_peft_counts_for_mixture_of_experts(path, names, r):
    """all-linear adapts every nn.Linear but the output head (PEFT's _maybe_include_all_linear_layers excludes
    only get_output_embeddings()), so each expert's projections and the router 'gate' too; the experts' module
    names adapt the experts alone, 'gate' the router alone. Params include the adapters."""
    base = tuned(path, "full", seq_len=16).totals.params
    est = tuned(path, "lora", r, "all-linear", seq_len=16)
    assert est.trainable_params == peft_moe_count(path, r)
    assert est.totals.params == base + est.trainable_params
    experts = tuned(path, "lora", r, names, seq_len=16).trainable_params
    assert experts == peft_moe_count(path, r, attention=False, router=False)
    assert tuned(path, "lora", r, "gate", seq_len=16).trainable_params == peft_moe_count(
        path, r, attention=False, experts=False)


def test_qwen3_moe_experts_add_415m_at_rank_8():
    """Qwen3-30B-A3B at r = 8: 48 layers x 128 experts x 8 x 3 (2048 + 768) = 415,236,096 adapter params on the
    experts, what the attention-only count missed."""
    est = tuned("qwen3-30b-a3b.json", "lora", 8, "all-linear", seq_len=16)
    attention = tuned("qwen3-30b-a3b.json", "lora", 8, "q_proj,k_proj,v_proj,o_proj", seq_len=16)
    router = 48 * 8 * (2048 + 128)
    assert est.trainable_params - attention.trainable_params - router == 48 * 128 * 8 * 3 * (2048 + 768)


def test_deepseek_s_router_is_no_module():
    """DeepSeek's router (transformers 4.x DeepseekV2MoEGate / DeepseekV3TopkRouter) is a bare nn.Parameter:
    all-linear leaves it, and 'gate' is no module to target; the experts are gate_proj, up_proj, down_proj."""
    est = tuned("tiny-deepseek-v3.json", "lora", 4, "all-linear", seq_len=8)
    moe = [r.node for r in est.layers if r.node.op == "mixture_of_experts"]
    assert moe and all(n.kwargs["lora_targets"] == ("w1", "w3", "w2") and n.trainable for n in moe)
    with pytest.raises(SizingError, match="'gate' is not a linear layer of the model"):
        load_graph(HF + "tiny-deepseek-v3.json", finetune=("lora", 4, "gate"))


def test_an_unknown_target_names_the_expert_modules():
    r = CliRunner().invoke(main, ["estimate", HF + "qwen3-30b-a3b.json", "--finetune", "lora", "--lora-targets",
                                  "experts", "--seq-len", "16"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: --lora-targets: 'experts' is not a linear layer of the model")
    assert "it has down_proj, gate, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in r.stderr


def moe_spec(n, k, e=8, f=6, tokens=5):
    """A linear layer (so the experts' input needs a gradient) and a mixture of n SwiGLU experts, k per token."""
    return {"input": [tokens, e], "defaults": {"batch": 2},
            "layers": [{"op": "linear", "name": "proj", "out_features": e, "bias": False},
                       {"op": "mixture_of_experts", "name": "moe", "num_experts": n, "top_k": k,
                        "intermediate_size": f}]}


def moe_row(data):
    return next(r for r in estimate_graph(build(data, {}, "t")).layers if r.node.name == "moe")


def test_a_token_pays_the_adapters_of_its_k_experts_only():
    """Forward: each of a token's k experts adds B A x to its three products, r (in + out) MACs and out adds
    each (PEFT's lora.Linear: result + lora_B(lora_A(x))); the adapters of all n experts are weights, with
    gradients and optimizer state."""
    r, e, f, tokens = 4, 8, 6, 2 * 5
    for n, k in ((4, 2), (8, 2), (8, 1)):
        frozen, tuned_ = moe_row(apply(moe_spec(n, k), "lora", r, "proj")), moe_row(
            apply(moe_spec(n, k), "lora", r, "w1,w3,w2"))
        per_row = 2 * (e + f) + (f + e)                        # w1, w3: e -> f; w2: f -> e
        assert tuned_.cost.macs - frozen.cost.macs == tokens * k * r * per_row
        assert tuned_.cost.flops - frozen.cost.flops == 2 * tokens * k * r * per_row + tokens * k * (2 * f + e)
        assert tuned_.cost.params - frozen.cost.params == n * r * per_row
    est = estimate_graph(build(apply(moe_spec(8, 2), "lora", r, "all-linear"), {}, "t"))
    adapters = 8 * r * (2 * (e + f) + (f + e)) + r * (e + 8) + r * (e + e)     # experts, router, proj
    assert est.trainable_params == adapters
    assert est.memory.gradients == 4 * adapters and est.memory.optimizer == 8 * adapters   # fp32, AdamW


def test_frozen_experts_still_pass_input_gradients():
    """Frozen experts (the adapters elsewhere) compute their input gradient and everything it goes through, but
    no weight gradient: full fine-tuning's backward less 2 x the products' MACs on the weights (router e n, the k
    chosen experts' 3 e F per token)."""
    n, k, e, f, tokens = 4, 2, 8, 6, 2 * 5
    full = moe_row(moe_spec(n, k))
    frozen = moe_row(apply(moe_spec(n, k), "lora", 4, "proj"))
    assert not frozen.node.trainable and frozen.cost.backward_flops > 0
    assert full.cost.backward_flops - frozen.cost.backward_flops == 2 * tokens * (e * n + 3 * k * e * f)


def test_qlora_keeps_the_experts_in_nf4():
    """QLoRA on Mixtral: bitsandbytes stores every frozen nn.Linear but lm_head in NF4: q, k, v, o, the experts and
    the router; embeddings, norms, the head and the adapters stay 16-bit."""
    c = config("mixtral-8x7b-v0.1.json")
    h, layers, n, f = c["hidden_size"], c["num_hidden_layers"], c["num_local_experts"], c["intermediate_size"]
    kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
    frozen_linear = layers * (2 * h * h + 2 * h * kv + n * 3 * h * f + n * h)
    est = tuned("mixtral-8x7b-v0.1.json", "qlora", 16, seq_len=16)
    assert est.memory.weights == -(-int(frozen_linear * NF4_BITS) // 8) + (est.totals.params - frozen_linear) * 2


def test_a_target_takes_every_module_of_that_name_as_peft_does():
    """PEFT matches a target against a module's name or its last dotted parts (check_target_module_exists), so on
    Qwen1.5-MoE-A2.7B 'gate_proj' takes the 60 routed experts' and the shared expert's (shared_expert.gate_proj,
    which that name alone also takes), and 'gate' the router but not shared_expert_gate."""
    c = config("qwen1.5-moe-a2.7b.json")
    h, layers, n = c["hidden_size"], c["num_hidden_layers"], c["num_experts"]
    f, shared, r = c["moe_intermediate_size"], c["shared_expert_intermediate_size"], 8
    assert tuned("qwen1.5-moe-a2.7b.json", "lora", r, "gate_proj", seq_len=8).trainable_params == \
        r * layers * (n * (h + f) + (h + shared))
    assert tuned("qwen1.5-moe-a2.7b.json", "lora", r, "shared_expert.gate_proj", seq_len=8).trainable_params == \
        r * layers * (h + shared)
    assert tuned("qwen1.5-moe-a2.7b.json", "lora", r, "gate", seq_len=8).trainable_params == r * layers * (h + n)
    with pytest.raises(SizingError, match="did you mean 'shared_expert.gate_proj'"):
        load_graph(HF + "qwen1.5-moe-a2.7b.json", finetune=("lora", r, "shared_experts.gate_proj"))


def test_a_bad_module_name_is_refused():
    spec = {"input": [4], "layers": [{"op": "linear", "name": "a", "out_features": 2, "module": "shared expert"}]}
    with pytest.raises(SizingError, match=r"layers\[0\] \(linear 'a'\)\.module: must be a module name"):
        build(spec, {}, "t")


# ---------------------------------------------------------------- targets past a layer's own module name

def test_targets_naming_three_layers_print_what_peft_printed():
    """A PEFT print_trainable_parameters() log of LoRA r = 16 on q, k, v, o of layers 6, 7 and 8 only
    (LoraConfig layers_to_transform=[6, 7, 8]) of HuggingFaceH4/zephyr-7b-beta, Mistral-7B-v0.1's config
    (github sungwon-chae/arxiv_confi, ETU/etu/utils.py apply_lora_to_model and its run log):
    'trainable params: 1,277,952 || all params: 7,243,010,048'. The same modules named in full, by tails past
    their layer (PEFT's list rule: the name or its last dotted parts) and as one regular expression (re.fullmatch
    over the full names, PEFT's rule for a target_modules string)."""
    names = [f"{where}{i}.self_attn.{m}_proj" for i, where in ((6, "model.layers."), (7, "layers."), (8, ""))
             for m in "qkvo"]
    for targets in (",".join(names), r"model\.layers\.[678]\.self_attn\.[qkvo]_proj"):
        est = tuned("mistral-7b-v0.1.json", "lora", 16, targets, seq_len=16)
        assert (est.trainable_params, est.totals.params) == (1_277_952, 7_243_010_048), targets


def test_one_layer_s_adapter_costs_its_own_products_only():
    """model.layers.5.mlp.down_proj on Llama-2-7B: r (in + out) params, from the config, and r (in + out) MACs per
    token on top of the frozen model's forward; the other 31 layers count as before (the split into runs of
    alike layers changes no total)."""
    c = config("llama-2-7b.json")
    h, f, r, tokens = c["hidden_size"], c["intermediate_size"], 8, 16
    base = tuned("llama-2-7b.json", "full", seq_len=tokens)
    for target in ("model.layers.5.mlp.down_proj", "layers.5.mlp.down_proj", "5.mlp.down_proj"):
        est = tuned("llama-2-7b.json", "lora", r, target, seq_len=tokens)
        assert est.trainable_params == r * (f + h) == est.totals.params - base.totals.params, target
        assert est.totals.macs - base.totals.macs == tokens * r * (f + h)
    whole = tuned("llama-2-7b.json", "lora", r, "mlp.down_proj", seq_len=tokens)
    assert whole.trainable_params == c["num_hidden_layers"] * r * (f + h)


def test_one_expert_s_target_adapts_that_expert_only():
    """transformers 4.x names each expert's projections <layer>.mlp.experts.<j>.gate_proj (Qwen3-MoE) and
    <layer>.block_sparse_moe.experts.<j>.w1 (Mixtral), the router <layer>.mlp.gate / block_sparse_moe.gate: a
    target naming expert 3 adapts expert 3 (of every layer, or of the one it names), r (in + out) each."""
    q = config("qwen3-30b-a3b.json")
    h, f, layers, r = q["hidden_size"], q["moe_intermediate_size"], q["num_hidden_layers"], 8
    assert tuned("qwen3-30b-a3b.json", "lora", r, "model.layers.2.mlp.experts.3.gate_proj",
                 seq_len=8).trainable_params == r * (h + f)
    assert tuned("qwen3-30b-a3b.json", "lora", r, "experts.3.gate_proj,experts.3.down_proj",
                 seq_len=8).trainable_params == layers * 2 * r * (h + f)
    m = config("mixtral-8x7b-v0.1.json")
    h, f, n = m["hidden_size"], m["intermediate_size"], m["num_local_experts"]
    assert tuned("mixtral-8x7b-v0.1.json", "lora", r, "block_sparse_moe.experts.3.w1",
                 seq_len=8).trainable_params == m["num_hidden_layers"] * r * (h + f)
    assert tuned("mixtral-8x7b-v0.1.json", "lora", r, "layers.0.block_sparse_moe.gate",
                 seq_len=8).trainable_params == r * (h + n)


def test_adapters_on_some_experts_pay_their_share_of_the_rows():
    """m of n experts adapted: their adapters' weights only, and under balanced routing their share of the
    tokens x k rows, ceil(tokens k m / n), each r (in + out) MACs; naming all n is every expert's adapters."""
    r, e, f, tokens, n, k = 4, 8, 6, 2 * 5, 4, 2
    frozen = moe_row(apply(moe_spec(n, k), "lora", r, "proj"))
    one = moe_row(apply(moe_spec(n, k), "lora", r, "moe.experts.1.w1"))
    assert one.cost.params - frozen.cost.params == r * (e + f)
    assert one.cost.macs - frozen.cost.macs == -(-tokens * k // n) * r * (e + f)
    every = ",".join(f"moe.experts.{j}.w1" for j in range(n))
    assert moe_row(apply(moe_spec(n, k), "lora", r, every)).cost == moe_row(apply(moe_spec(n, k), "lora", r, "w1")).cost


def test_all_linear_leaves_out_gemma_2_s_head_before_its_soft_capping():
    """Gemma 2's lm_head is followed by the logits' soft-capping, yet is the output embedding PEFT's all-linear
    drops: the seven projections of every layer, from the config."""
    c = config("gemma-2-2b.json")
    h, layers, f = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + f) + (f + h)
    assert tuned("gemma-2-2b.json", "lora", 8, None, seq_len=16).trainable_params == 8 * layers * per_layer


def test_bad_targets_name_the_model_s_modules_and_how_they_are_numbered():
    r = CliRunner().invoke(main, ["estimate", HF + "llama-2-7b.json", "--finetune", "lora", "--lora-targets",
                                  "model.layers.32.self_attn.q_proj"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "'model.layers.32.self_attn.q_proj' is not a linear layer of the model" in r.stderr
    assert "full names as model.layers.0.self_attn.q_proj, model.layers.0 to 31" in r.stderr
    with pytest.raises(SizingError, match=r"the regular expression 'layers\\.0\\..\*' matches no linear layer"):
        load_graph(HF + "llama-2-7b.json", finetune=("lora", 8, r"layers\.0\..*"))     # not the whole name
    with pytest.raises(SizingError, match="is not a valid regular expression"):
        load_graph(HF + "llama-2-7b.json", finetune=("lora", 8, "q_proj("))
    huge = {"input": [8], "blocks": {"b": {"layers": [{"op": "linear", "name": "fc", "out_features": 8}]}},
            "layers": [{"block": "b", "name": "stack", "repeat": 10 ** 12}]}
    with pytest.raises(SizingError, match="names numbered modules, and the model has more than 1,000,000"):
        apply(huge, "lora", 2, "stack.5.fc")                 # refused without listing 10^12 names
    assert apply(huge, "lora", 2, "fc")["layers"][0]["repeat"] == 10 ** 12    # an unnumbered name takes all


def test_adapters_on_some_experts_are_not_executed():
    spec = {"input": [4, 8], "defaults": {"batch": 2}, "layers": [
        {"op": "linear", "name": "proj", "out_features": 8, "bias": False, "trainable": False},
        {"op": "mixture_of_experts", "name": "moe", "num_experts": 4, "top_k": 2, "intermediate_size": 6,
         "lora_rank": 2, "lora_targets": ["w1"], "lora_experts": {"w1": [1]}}]}
    from sizing.execute.model import Model, NoKernel
    with pytest.raises(NoKernel, match="adapters on only some experts"):
        Model(build(spec, {}, "t"), numpy.float32, 0)


def test_adapter_gradients_are_reduced_where_their_weights_live():
    """Expert parallelism splits the experts, not a router or the attention: an expert adapter's gradient is
    all-reduced over the d / e ranks that hold the same experts, a router adapter's and an attention adapter's
    over all d, and their gradients and optimizer state are on every rank. So with adapters on Mixtral's routers
    and attention only, the gradient all-reduce and its memory do not depend on e; with the routers' and w1's,
    the expert-sharded share of what trains is n r (h + f) of n r (h + f) + r (h + n) per layer (config)."""
    from sizing.predict.fit import stages
    from sizing.predict.setup import Layout
    from sizing.predict.training import evaluate
    db = load_hwdb(environ={})
    dev = db["h100-sxm"]
    factors = shipped().factors(dev, "bf16", db)
    est = estimator(HF + "mixtral-8x7b-v0.1.json", finetune=("lora", 8, "gate,q_proj,k_proj,v_proj,o_proj"),
                    seq_len=64, dtype="bf16")(1)
    work = Workload(dtype="bf16", optimizer=est.settings["optimizer"], tokens=10 ** 8)
    one, split = (evaluate(est, Layout(data_parallel=8, expert_parallel=e), work, dev, factors) for e in (1, 8))
    assert split.dp_comm_seconds == one.dp_comm_seconds > 0
    assert (split.memory.gradients, split.memory.optimizer) == (one.memory.gradients, one.memory.optimizer)
    assert split.memory.weights < one.memory.weights                    # the frozen experts are split
    c = config("mixtral-8x7b-v0.1.json")
    h, f, n = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    tuned_ = estimator(HF + "mixtral-8x7b-v0.1.json", finetune=("lora", 8, "gate,w1"), seq_len=64, dtype="bf16")(1)
    assert stages(tuned_).trained_expert_share == n * (h + f) / (n * (h + f) + (h + n))


def test_a_split_block_use_is_still_read_by_its_name():
    """A target naming one copy splits the use into runs named by their first copy (stack_0, stack_2, stack_3); a
    layer that read the use by name reads its last run, and the unnamed layers after it keep the names the
    builder gave them (linear_1, which 'out' reads). Trainable: copy 2's fc alone, r (8 + 8)."""
    spec = {"input": [8], "defaults": {"batch": 2},
            "blocks": {"b": {"layers": [{"op": "linear", "name": "fc", "out_features": 8}, {"op": "relu"}]}},
            "layers": [{"block": "b", "name": "stack", "repeat": 4},
                       {"op": "linear", "out_features": 3, "inputs": "stack"},
                       {"op": "add", "name": "out", "inputs": ["linear_1", "linear_1"]}], "output": "out"}
    data = apply(spec, "lora", 2, "stack.2.fc")
    assert [(x.get("name"), x.get("repeat")) for x in data["layers"][:3]] == [("stack_0", 2), ("stack_2", 1),
                                                                              ("stack_3", 1)]
    assert estimate_graph(build(data, {}, "t")).trainable_params == 2 * (8 + 8)


def test_all_linear_says_what_a_multihead_attention_layer_leaves_out():
    """GPT-2's attention is one multihead_attention layer here, whose projections take no adapters, while PEFT's
    all-linear adapts its Conv1D c_attn (E -> 3E) and c_proj (E -> E) too: the warning gives the params the count
    is short, r (4E + 2E) per layer, and with them the count is PEFT's r (E + 3E) + r 2E + r (E + 4E) + r (4E + E)."""
    c = config("gpt2.json")
    e, layers, r = c["n_embd"], c["n_layer"], 8
    est = tuned("gpt2.json", "lora", r, None, seq_len=16)
    short = r * layers * (4 * e + 2 * e)
    assert any(f"{short:,} trainable params fewer than PEFT prints" in w for w in est.graph.warnings)
    assert est.trainable_params + short == r * layers * ((e + 3 * e) + 2 * e + (e + 4 * e) + (4 * e + e))
    assert not any("multihead" in w for w in tuned("gpt2.json", "lora", r, "c_fc", seq_len=16).graph.warnings)


def test_gpt_neox_s_fused_query_key_value_is_the_target():
    """GPT-NeoX (Pythia) has one fused attention.query_key_value nn.Linear (h -> 3h), PEFT's default target for
    the family: r (h + 3h) per layer; all-linear adds dense (h -> h) and the MLP's two (h -> f, f -> h)."""
    c = config("pythia-160m.json")
    h, f, layers, r = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], 8
    assert tuned("pythia-160m.json", "lora", r, "query_key_value", seq_len=16).trainable_params == \
        r * layers * (h + 3 * h)
    assert tuned("pythia-160m.json", "lora", r, None, seq_len=16).trainable_params == \
        r * layers * ((h + 3 * h) + 2 * h + 2 * (h + f))


def test_estimate_check_runs_the_fine_tuned_graph(monkeypatch):
    """--check after --finetune runs the graph the estimate counted (frozen base, adapters), not the base's full
    training: the options reach sizing.execute.check.check."""
    import sizing.execute.check as checking

    def fake(spec, **options):
        raise SizingError(f"checked {options['finetune']}")
    monkeypatch.setattr(checking, "check", fake)
    r = CliRunner().invoke(main, ["estimate", "mnist_mlp", "--finetune", "lora", "--lora-rank", "4", "--check"])
    assert r.exit_code == 2 and "checked ('lora', 4, None)" in r.stderr
