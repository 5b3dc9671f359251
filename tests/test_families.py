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
                                  "qwen1.5-moe-a2.7b.json", "deepseek-v2-lite.json", "deepseek-v3.json",
                                  "gemma-2-2b.json", "gemma-3-1b.json"])
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


def mla(e, heads, q_rank, latent, nope, rope, v):
    """DeepSeek's multi-head latent attention params (arXiv:2405.04434, eq. 37-47): q through a rank-q_rank
    down-projection with its RMSNorm (or one q projection), the kv down-projection to the latent plus the shared
    rotary key, the latent's RMSNorm, the up-projection to each head's no-rope key and value, the output."""
    q = (e * q_rank + q_rank + q_rank * heads * (nope + rope)) if q_rank else e * heads * (nope + rope)
    return q + e * (latent + rope) + latent + latent * heads * (nope + v) + heads * v * e


def deepseek(e, vocab, layers, dense, inter, attention, experts, k, width, shared):
    """Embedding and untied head, each layer's two RMSNorms and attention, dense SwiGLUs in the first layers,
    then n routed SwiGLU experts of ``width``, a router of n x e and one shared SwiGLU of shared x width;
    returns (total, active)."""
    moe = experts * 3 * e * width + experts * e + 3 * e * shared * width
    total = 2 * vocab * e + layers * (attention + 2 * e) + dense * 3 * e * inter + (layers - dense) * moe + e
    return total, total - (layers - dense) * (experts - k) * 3 * e * width


def test_deepseek_v3_671b_total_37b_active():
    """DeepSeek-V3 (deepseek-ai/DeepSeek-V3 config.json): 671B total parameters without the 14B multi-token
    prediction module, 37B activated per token (the V3 report's abstract); 3 dense layers, then 58 of 256
    routed experts (8 per token) and a shared one. The router's e_score_correction_bias is a buffer, not a
    parameter, as transformers registers it."""
    r = CliRunner().invoke(main, ["estimate", HF + "deepseek-v3.json", "--seq-len", "32", "--format", "json"])
    d = json.loads(r.stdout)
    total, active = deepseek(7168, 129280, 61, 3, 18432, mla(7168, 128, 1536, 512, 128, 64, 128), 256, 8, 2048, 1)
    assert (d["params"], d["language_model"]["active_params"]) == (total, active)
    assert total == 671_026_404_352 and round(total / 1e9) == 671 and round(active / 1e9) == 38
    assert d["buffers"] == 58 * 256
    # MTP apart: enorm, hnorm, eh_proj (7168 x 14336), one MoE decoder layer and the shared head's norm (the
    # report's 14B counts the embedding and head copies the checkpoint stores: 685B in all)
    mtp = 3 * 7168 + 2 * 7168 * 7168 + mla(7168, 128, 1536, 512, 128, 64, 128) + 2 * 7168 + \
        256 * 3 * 7168 * 2048 + 256 * 7168 + 3 * 7168 * 2048
    assert any(f"1 module(s) of {mtp:,} params not counted" in w for w in d["warnings"])
    assert round((total + mtp + 2 * 129280 * 7168) / 1e9) == 684       # 684.5B: the card's "685B"


def test_deepseek_v2_and_v2_lite():
    """DeepSeek-V2: 236B total, 21B activated; V2-Lite (no q compression, greedy routing): 15.7B total
    (deepseek-ai model cards; the V2 report's table 1)."""
    v2, v2_active = deepseek(5120, 102400, 60, 1, 12288, mla(5120, 128, 1536, 512, 128, 64, 128), 160, 6, 1536, 2)
    lite, lite_active = deepseek(2048, 102400, 27, 1, 10944, mla(2048, 16, None, 512, 128, 64, 128), 64, 6, 1408, 2)
    assert counted("deepseek-v2.json") == (v2, v2_active)
    assert counted("deepseek-v2-lite.json") == (lite, lite_active)
    assert round(v2 / 1e9) == 236 and round(v2_active / 1e9) == 21 and round(lite / 1e9, 1) == 15.7


def gemma2(e, inter, heads, kv, head_dim, layers, vocab, head_norm=False):
    """Gemma 2 / 3: tied embedding, per layer four RMSNorms, q/k/v/o without bias (Gemma 3: q/k norms of
    head_dim), a GeGLU MLP; a final norm."""
    per_layer = 2 * e * head_dim * (heads + kv) + 3 * e * inter + 4 * e + (2 * head_dim if head_norm else 0)
    return vocab * e + layers * per_layer + e


def test_gemma2_and_gemma3_counts():
    """Gemma 2 2B: 2,614,341,888 and 27B: 27,227,128,320 (google/gemma-2-* num_parameters, as the cards' 2.6B
    and 27.2B); Gemma 3 1B: 999,885,952 (the card's 1B)."""
    assert counted("gemma-2-2b.json")[0] == gemma2(2304, 9216, 8, 4, 256, 26, 256000) == 2_614_341_888
    assert counted("gemma-2-27b.json")[0] == gemma2(4608, 36864, 32, 16, 128, 46, 256000) == 27_227_128_320
    assert counted("gemma-3-1b.json")[0] == gemma2(1152, 6912, 4, 1, 256, 26, 262144, True) == 999_885_952


def attention_rows(name, seq):
    r = CliRunner().invoke(main, ["estimate", HF + name, "--seq-len", str(seq), "--format", "json"])
    return [row for row in json.loads(r.stdout)["layers"] if row["op"] == "scaled_dot_product_attention"]


def test_gemma2_local_layers_score_only_their_window():
    """At 8192 tokens Gemma 2's local layers (even ones, window 4096) score half the pairs of the global
    layers; below the window the two are alike. Each score also pays soft-capping: / 50, tanh, * 50."""
    long = attention_rows("gemma-2-2b.json", 8192)
    local, glob = long[0], long[1]
    assert local["name"].startswith("layers_0.") and glob["name"].startswith("layers_1.")
    heads, d = 8, 256
    assert glob["macs"] == heads * 8192 * 8192 * 2 * d and local["macs"] == heads * 8192 * 4096 * 2 * d
    # forward per score: scale 1, soft-cap 3, softmax 5, mask 1
    assert glob["flops"] == 2 * glob["macs"] + 10 * heads * 8192 * 8192
    short = attention_rows("gemma-2-2b.json", 1024)
    assert short[0]["macs"] == short[1]["macs"]


def test_gemma3_keeps_one_global_layer_in_six():
    """Gemma 3 1B: layers 5, 11, 17 and 23 attend globally, the other 22 over 512 keys (sliding_window_pattern 6)."""
    per_layer = [row["macs"] // row["repeat"] for row in attention_rows("gemma-3-1b.json", 2048)
                 for _ in range(row["repeat"])]
    pair = 4 * 2048 * 2 * 256
    assert per_layer == [pair * (2048 if (i + 1) % 6 == 0 else 512) for i in range(26)]


def test_deepseek_v3_attention_scores_192_and_mixes_128():
    """MLA's scores use the 128 no-rope + 64 rotary dims, the values 128: per token pair 128 x (192 + 128) MACs."""
    rows = attention_rows("deepseek-v3.json", 64)
    assert {row["macs"] // row["repeat"] for row in rows} == {128 * 64 * 64 * (192 + 128)}
    assert sum(row["repeat"] for row in rows) == 61


@pytest.mark.parametrize("name", ["tiny-deepseek-v3.json", "tiny-gemma2.json"])
def test_check_runs_the_new_architectures_exactly(name):
    """DeepSeek-V3's layer (MLA with a low-rank q, the shared rotary key expanded over heads, v head_dim 6 against
    q/k's 8, sigmoid routing in 2 of 4 groups, a shared expert, a dense first layer) and Gemma 2's (a 4-key
    window at 12 tokens, soft-capped scores and logits) at toy widths: `sizing check` executes every layer with
    the analytic counts and finite-difference gradients."""
    r = CliRunner().invoke(main, ["check", HF + name, "--steps", "2", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout[r.stdout.index("{"):])
    assert d["exact"] and d["ok"]
