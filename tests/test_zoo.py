"""The model zoo (models/*.yaml) against figures found outside this code.

- Parameters equal the counts published by torchvision (``num_params`` of each weights enum), Hugging Face
  (bert-base-uncased, gpt2), the Keras mnist_mlp example and LeNet-5's layer sizes.
- Forward MACs round to torchvision's "GFLOPS" column, which is the MACs of conv and linear layers in
  units of 10^9, rounded to 2 decimals (confirmed on the torchvision model pages: resnet18 1.81,
  resnet50 4.09, vgg16 15.47, alexnet 0.71, mobilenet_v2 0.30).
- Forward MACs equal closed forms written here by hand, stage by stage (CNNs) or per token (transformers),
  not through the op formulas; exact integer equality.
- Every spec estimates with batch 1 and 3, by zoo name and by path, and ``sizing estimate --format json``
  has the documented keys.
"""
from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from click.testing import CliRunner

import sizing
from sizing.cli import main
from sizing.model.estimate import zoo_names

MODELS = Path(__file__).resolve().parent.parent / "models"

# name: (published parameter count, where it is published)
PUBLISHED_PARAMS = {
    "mnist_mlp": (669_706, "Keras examples/mnist_mlp.py, model.summary()"),
    "lenet5": (61_706, "LeCun et al. 1998 layer sizes: 156 + 2,416 + 48,120 + 10,164 + 850"),
    "alexnet": (61_100_840, "torchvision AlexNet_Weights.IMAGENET1K_V1 num_params"),
    "vgg16": (138_357_544, "torchvision VGG16_Weights.IMAGENET1K_V1 num_params"),
    "resnet18": (11_689_512, "torchvision ResNet18_Weights.IMAGENET1K_V1 num_params"),
    "resnet50": (25_557_032, "torchvision ResNet50_Weights.IMAGENET1K_V1 num_params"),
    "mobilenet_v2": (3_504_872, "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 num_params"),
    "bert_base": (109_482_240, "Hugging Face BertModel.from_pretrained('bert-base-uncased').num_parameters()"),
    "gpt2_small": (124_439_808, "Hugging Face GPT2LMHeadModel.from_pretrained('gpt2').num_parameters(), lm_head tied"),
}

# torchvision "GFLOPS" column in hundredths (MACs / 10^9, rounded to 2 decimals)
TORCHVISION_GFLOPS_HUNDREDTHS = {"resnet18": 181, "resnet50": 409, "vgg16": 1547, "alexnet": 71, "mobilenet_v2": 30}


@lru_cache(maxsize=None)
def est(spec: str, batch: int = 1, seq_len: int | None = None) -> sizing.Estimate:
    return sizing.estimate(spec, batch=batch, seq_len=seq_len)


def test_zoo_holds_every_published_model():
    assert set(zoo_names()) == set(PUBLISHED_PARAMS)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_params_equal_published_count(name):
    published, source = PUBLISHED_PARAMS[name]
    e = est(name)
    assert e.totals.params == published, source
    assert e.trainable_params == published


@pytest.mark.parametrize("name", sorted(TORCHVISION_GFLOPS_HUNDREDTHS))
def test_macs_round_to_torchvision_gflops(name):
    macs = est(name).totals.macs
    assert (macs + 5 * 10 ** 6) // 10 ** 7 == TORCHVISION_GFLOPS_HUNDREDTHS[name]


# ---------------------------------------------------------------- closed forms, written by hand

def vgg16_macs() -> int:
    """Five stages of n conv 3x3 at 224 / 2^s: H^2 * 9 * (Cin*C + (n-1)*C^2); then fc 25088-4096-4096-1000."""
    conv, c_in = 0, 3
    for s, (c, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        h = 224 >> s
        conv += h * h * 9 * (c_in * c + (n - 1) * c * c)
        c_in = c
    return conv + 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000


def resnet_stem_macs() -> int:
    """conv 7x7/2, 3 -> 64 channels, 112 x 112 outputs."""
    return 112 * 112 * 64 * 3 * 7 * 7


def resnet50_macs() -> int:
    """Bottleneck stages (width w, n blocks, stride on the 3x3): the first block reads c_in channels at the
    stage's input size r_in (1x1 conv) and projects c_in -> 4w at the output size r; the n - 1 others cost
    r^2 * (4w*w + 9w^2 + w*4w) = 17 w^2 r^2 each."""
    total, c_in, r_in = resnet_stem_macs(), 64, 56
    for w, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        r = r_in // stride
        total += r_in * r_in * c_in * w + r * r * (9 * w * w + w * 4 * w + c_in * 4 * w)
        total += (n - 1) * 17 * w * w * r * r
        c_in, r_in = 4 * w, r
    return total + 2048 * 1000


def resnet18_macs() -> int:
    """Basic stages of 2 blocks (two 3x3 convs each): 9 r^2 (c_in w + 3 w^2), plus a 1x1 projection
    r^2 c_in w where the stage halves the size."""
    total, c_in, r_in = resnet_stem_macs(), 64, 56
    for w, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        r = r_in // stride
        total += 9 * r * r * (c_in * w + 3 * w * w) + (r * r * c_in * w if stride == 2 else 0)
        c_in, r_in = w, r
    return total + 512 * 1000


def lenet5_macs() -> int:
    return 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10


def mnist_mlp_macs() -> int:
    return 784 * 512 + 512 * 512 + 512 * 10


def transformer_macs(t: int, layers: int, d: int) -> int:
    """Per token 12 L d^2 (q, k, v, out 4d^2; feed-forward d -> 4d -> d 8d^2), per sequence 2 L T^2 d
    (scores q k^T and probabilities @ v over the full T x T matrix)."""
    return t * 12 * layers * d * d + 2 * layers * t * t * d


def bert_base_macs(t: int) -> int:
    """12 layers of d = 768 and the pooler, one d x d linear on the first token."""
    return transformer_macs(t, 12, 768) + 768 * 768


def gpt2_small_macs(t: int) -> int:
    """12 layers of d = 768 and the lm_head, d -> V = 50257 on every token."""
    return transformer_macs(t, 12, 768) + t * 768 * 50257


CLOSED_FORMS = {"vgg16": vgg16_macs, "resnet50": resnet50_macs, "resnet18": resnet18_macs,
                "lenet5": lenet5_macs, "mnist_mlp": mnist_mlp_macs}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
@pytest.mark.parametrize("batch", [1, 3])
def test_cnn_macs_equal_closed_form(name, batch):
    assert est(name, batch).totals.macs == batch * CLOSED_FORMS[name]()


@pytest.mark.parametrize("name, closed, seq_lens", [
    ("bert_base", bert_base_macs, (None, 1, 37, 512)),
    ("gpt2_small", gpt2_small_macs, (None, 1, 100, 1024)),
])
@pytest.mark.parametrize("batch", [1, 3])
def test_transformer_macs_equal_closed_form(name, closed, seq_lens, batch):
    for seq_len in seq_lens:
        e = est(name, batch, seq_len)
        assert e.totals.macs == batch * closed(e.settings["seq_len"])


def test_transformer_default_sequence_lengths():
    assert est("bert_base").settings["seq_len"] == 128
    assert est("gpt2_small").settings["seq_len"] == 1024


# ---------------------------------------------------------------- every spec, every route

@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_estimates_cleanly_by_name_and_path_and_batch(name):
    one = est(name, 1)
    three = est(str(MODELS / f"{name}.yaml"), 3)
    assert one.graph.warnings == () and three.graph.warnings == ()
    assert one.settings["batch"] == 1 and three.settings["batch"] == 3
    assert three.totals.params == one.totals.params
    assert three.totals.macs == 3 * one.totals.macs > 0
    for e in (one, three):
        d = e.to_dict()
        counts = [d["params"], d["forward"]["macs"], d["forward"]["flops"], d["backward"]["flops"],
                  *d["memory_bytes"].values()]
        assert all(type(v) is int and v >= 0 for v in counts)


# ---------------------------------------------------------------- the CLI

LAYER_KEYS = {"name", "op", "output_shape", "params", "macs", "flops", "backward_flops", "bytes"}


def check_json_keys(d: dict):
    for key in ("model", "batch", "dtype", "params", "trainable_params"):
        assert key in d
    assert type(d["forward"]["macs"]) is int and type(d["forward"]["flops"]) is int
    assert type(d["backward"]["flops"]) is int
    assert d["training_step"]["flops"] == d["forward"]["flops"] + d["backward"]["flops"]
    mem = d["memory_bytes"]
    assert set(mem) >= {"weights", "gradients", "optimizer", "activations", "total"}
    assert mem["total"] == mem["weights"] + mem["gradients"] + mem["optimizer"] + mem["activations"]
    assert d["layers"] and all(LAYER_KEYS <= set(layer) for layer in d["layers"])
    assert sum(layer["params"] for layer in d["layers"]) == d["params"]
    assert sum(layer["macs"] for layer in d["layers"]) == d["forward"]["macs"]


def test_cli_json_in_process():
    r = CliRunner().invoke(main, ["estimate", "lenet5", "--format", "json", "--batch", "2"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    check_json_keys(d)
    assert (d["model"], d["batch"], d["dtype"]) == ("lenet5", 2, "fp32")
    assert d["params"] == PUBLISHED_PARAMS["lenet5"][0]
    assert d["forward"]["macs"] == 2 * lenet5_macs()


def test_cli_json_subprocess_stdout_is_pure_json():
    r = subprocess.run([sys.executable, "-c", "from sizing.cli import main; main()", "estimate", "gpt2_small",
                        "--format", "json", "--seq-len", "64"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    check_json_keys(d)
    assert d["params"] == PUBLISHED_PARAMS["gpt2_small"][0]
    assert d["forward"]["macs"] == gpt2_small_macs(64)
