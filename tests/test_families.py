"""Model families of issue 14 imported from their config.json, each against its exact parameter count derived here
from the architecture's formula (independently of the importer and the op registry), and against the published
size where the model card states it."""
from __future__ import annotations

import json

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
