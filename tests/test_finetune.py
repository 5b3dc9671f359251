"""Fine-tuning (sizing/model/finetune.py): LoRA and QLoRA against PEFT's printed counts and the QLoRA paper's
claims, a frozen base's gradients, optimizer state, kept activations and backward FLOPs by hand."""
from __future__ import annotations

import json

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
