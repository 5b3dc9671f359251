"""Model families of issue 14 imported from their config.json, each against its exact parameter count derived here
from the architecture's formula (independently of the importer and the op registry), and against the published
size where the model card states it."""
from __future__ import annotations

import json

import pytest

from click.testing import CliRunner

from sizing.cli import main

HF = "tests/data/hf/"


def counted(name):
    r = CliRunner().invoke(main, ["estimate", HF + name, "--seq-len", "32", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    return d["params"], d["language_model"]["active_params"]


def decoder(hidden, inter, heads, kv, head_dim, layers, vocab, tied, head_norm=False, experts=None):
    """Embedding, layers of (two RMSNorms, q/k/v/o projections without bias, optional per-head q/k RMSNorm of
    head_dim, a SwiGLU MLP or n SwiGLU experts with a bias-free router), a final RMSNorm, the head unless tied."""
    attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2 + (2 * head_dim if head_norm else 0)
    mlp = 3 * hidden * inter if experts is None else experts * 3 * hidden * inter + experts * hidden
    per_layer = attention + mlp + 2 * hidden
    return vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden


def test_qwen3_dense_with_head_norms():
    """Qwen3-0.6B (Qwen/Qwen3-0.6B config.json): 0.44B non-embedding parameters on its model card."""
    total, active = counted("qwen3-0.6b.json")
    assert total == active == decoder(1024, 3072, 16, 8, 128, 28, 151936, tied=True, head_norm=True)
    assert round((total - 151936 * 1024) / 1e9, 2) == 0.44


def test_qwen3_mixture_of_experts():
    """Qwen3-30B-A3B: 128 experts of width 768, 8 per token; 30.5B total, 3.3B activated (model card)."""
    total, active = counted("qwen3-30b-a3b.json")
    assert total == decoder(2048, 768, 32, 4, 128, 48, 151936, tied=False, head_norm=True, experts=128)
    assert total - active == 48 * (128 - 8) * 3 * 2048 * 768
    assert round(total / 1e9, 1) == 30.5 and 3.3e9 <= active < 3.4e9


def test_mistral_with_an_explicit_head_dim():
    """Mistral-Nemo 12B: head_dim 128 although 5120 / 32 = 160, so q_proj is 5120 -> 4096."""
    total, _ = counted("mistral-nemo-12b.json")
    assert total == decoder(5120, 14336, 32, 8, 128, 40, 131072, tied=False)
    assert round(total / 1e9, 1) == 12.2


def test_olmo2_norms_after_each_sublayer():
    """OLMo-2-1124-7B: no pre-norms; q_norm and k_norm over the whole projections (4096 each), a norm after
    attention and after the MLP; 7.30B on its model card."""
    total, _ = counted("olmo2-7b.json")
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096 + 2 * 4096
    assert total == 2 * 100352 * 4096 + 32 * per_layer + 4096
    assert round(total / 1e9, 2) == 7.30


def test_gemma_ties_its_head_and_scales_its_embedding():
    """Gemma 2B and 7B (google/gemma-2b, gemma-7b config.json): head_dim 256 whatever hidden / heads is, a GeGLU
    MLP, lm_head tied; the non-embedding parameters of Gemma Team 2024 (arXiv:2403.08295), Table 2."""
    two, _ = counted("gemma-2b.json")
    seven, _ = counted("gemma-7b.json")
    assert two == decoder(2048, 16384, 8, 1, 256, 18, 256000, tied=True)
    assert seven == decoder(3072, 24576, 16, 16, 256, 28, 256000, tied=True)
    assert (two - 256000 * 2048, seven - 256000 * 3072) == (1_981_884_416, 7_751_248_896)
    r = CliRunner().invoke(main, ["estimate", HF + "gemma-2b.json", "--seq-len", "32", "--format", "json"])
    layers = {row["name"]: row for row in json.loads(r.stdout)["layers"]}
    assert layers["normalizer"]["flops"] == 32 * 2048          # sqrt(hidden) times each embedded element


def test_phi3_fused_projections_split_by_views(tmp_path):
    """Phi-3-mini-4k (microsoft/Phi-3-mini-4k-instruct): qkv_proj 3072 -> 9216 and gate_up_proj 3072 -> 16384
    are single modules; 3.8B parameters. The split views cost nothing, so the forward FLOPs equal those of the
    same sizes written with separate projections (a llama config); backward differs by exactly autograd's
    fan-out sums: the three slices of qkv_proj and the two of gate_up_proj each return a full-size gradient
    (2 x 9216 + 16384 adds per token and layer), where llama sums the norm outputs' three and two consumers
    (2 x 3072 + 3072)."""
    total, _ = counted("phi-3-mini-4k.json")
    assert total == decoder(3072, 8192, 32, 32, 96, 32, 32064, tied=False) == 3_821_079_552
    with open(HF + "phi-3-mini-4k.json") as f:
        config = json.load(f)
    (tmp_path / "llama.json").write_text(json.dumps({**config, "model_type": "llama"}))
    flops = []
    for path in (HF + "phi-3-mini-4k.json", str(tmp_path / "llama.json")):
        r = CliRunner().invoke(main, ["estimate", path, "--seq-len", "64", "--format", "json"])
        d = json.loads(r.stdout)
        flops.append((d["params"], d["forward"]["flops"], d["backward"]["flops"]))
    assert flops[0][:2] == flops[1][:2]
    assert flops[0][2] - flops[1][2] == 64 * 32 * ((2 * 9216 + 16384) - (2 * 3072 + 3072))


def test_phi2_parallel_layer_with_biases():
    """Phi-2 (microsoft/phi-2): one LayerNorm feeding attention and MLP, biases on every projection and on
    lm_head, rotary on 32 of 80 dims per head; 2.7B on its model card."""
    total, _ = counted("phi-2.json")
    e, f, v = 2560, 10240, 51200
    per_layer = 2 * e + 4 * (e * e + e) + (e * f + f) + (f * e + e)
    assert total == v * e + 32 * per_layer + 2 * e + (v * e + v) == 2_779_683_840


def test_lora_targets_the_fused_phi3_modules():
    """PEFT on Phi-3 targets qkv_proj (r x (3072 + 9216) per layer), not q_proj: the fused module is the
    target, and an unfused name is refused."""
    args = ["estimate", HF + "phi-3-mini-4k.json", "--seq-len", "32", "--finetune", "lora", "--lora-rank", "8",
            "--format", "json"]
    r = CliRunner().invoke(main, [*args, "--lora-targets", "qkv_proj,o_proj"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["trainable_params"] == 32 * 8 * ((3072 + 9216) + (3072 + 3072))
    r = CliRunner().invoke(main, [*args, "--lora-targets", "q_proj"])
    assert r.exit_code == 2 and r.output.startswith("error:")


@pytest.mark.parametrize("name", ["qwen3-30b-a3b.json", "olmo2-7b.json", "gemma-2b.json", "phi-3-mini-4k.json",
                                  "phi-2.json", "falcon-7b.json", "falcon-40b.json", "llama-3.2-1b.json",
                                  "qwen1.5-moe-a2.7b.json"])
def test_emit_yaml_round_trips_to_identical_counts(name, tmp_path):
    """Each family through --emit-yaml: the written spec counts exactly what the config counts (every layer)."""
    out = tmp_path / "spec.yaml"
    base = ["--seq-len", "48", "--format", "json"]
    first = CliRunner().invoke(main, ["estimate", HF + name, "--emit-yaml", str(out), *base])
    again = CliRunner().invoke(main, ["estimate", str(out), *base])
    assert first.exit_code == again.exit_code == 0, first.output + again.output
    rows = [[(r["name"], r["params"], r["macs"], r["flops"], r["backward_flops"]) for r in json.loads(
        res.stdout[res.stdout.index("{"):])["layers"]] for res in (first, again)]
    assert rows[0] == rows[1] and len(rows[0]) > 10


def test_falcon_both_decoder_architectures():
    """Falcon-7B (old architecture: multi-query, one norm feeding attention and MLP in parallel) and Falcon-40B
    (new architecture: 8 kv groups, ln_attn and ln_mlp); fused query_key_value of (heads + 2 kv) x 64, no
    biases, lm_head tied. Published: 7B and 40B (tiiuae model cards; 6.92B and 41.3B as counted)."""
    seven, _ = counted("falcon-7b.json")
    forty, _ = counted("falcon-40b.json")

    def falcon(e, heads, kv, layers, norms):
        per_layer = 2 * e * norms + e * (heads + 2 * kv) * 64 + e * e + 2 * e * 4 * e
        return 65024 * e + layers * per_layer + 2 * e
    assert seven == falcon(4544, 71, 1, 32, 1) == 6_921_720_704
    assert forty == falcon(8192, 128, 8, 60, 2) == 41_303_293_952


def test_llama_3_2_with_rope_scaling_and_tied_embeddings():
    """Llama-3.2-1B: rope_scaling (llama3) changes no count; lm_head tied; 1.24B (model card)."""
    total, _ = counted("llama-3.2-1b.json")
    assert total == decoder(2048, 8192, 32, 8, 64, 16, 128256, tied=True) == 1_235_814_400


def test_qwen2_moe_shared_expert_beside_the_routed_ones():
    """Qwen1.5-MoE-A2.7B: 60 experts of width 1408, 4 per token, not renormalised; a shared SwiGLU expert of
    5632 with a one-output sigmoid gate; q/k/v biases. 14.3B total and 2.7B activated (model card)."""
    total, active = counted("qwen1.5-moe-a2.7b.json")
    e = 2048
    attention = 4 * e * e + 3 * e
    moe = 60 * e + 60 * 3 * e * 1408 + 3 * e * 5632 + e
    assert total == 2 * 151936 * e + 24 * (attention + moe + 2 * e) + e == 14_315_784_192
    assert total - active == 24 * (60 - 4) * 3 * e * 1408
    assert round(active / 1e9, 1) == 2.7
