"""Bad input through the real CLI: exit code 2, one line `error: FILE:LINE: FIELD: ...` that says what would
be valid, and never a traceback (docs/spec.md, "Errors")."""
from __future__ import annotations

import os
import re

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.common.yamlsafe import MAX_FILE_BYTES

LINEAR = "input: [3]\nlayers:\n  - {op: linear, out_features: 4}\n"


def run(*args):
    return CliRunner().invoke(main, ["estimate", *map(str, args)])


def write(tmp_path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def user_error(result, *fragments, line: int | None = None) -> str:
    """The one-line message of a user error; asserts its form, its location and that it names ``fragments``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    msg = lines[0]
    if line is not None:
        assert re.match(rf"error: \S+\.yaml:{line}: ", msg), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def spec_error(tmp_path, text, *fragments, line=None, args=()) -> str:
    path = write(tmp_path, text)
    msg = user_error(run(path, *args), *fragments, line=line)
    assert path in msg
    return msg


# ---------------------------------------------------------------- the file itself

def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    user_error(run(path), str(path), "no such file")


def test_missing_zoo_name_suggests_close_one():
    user_error(run("resnet5"), "no zoo model named 'resnet5'", "did you mean 'resnet50'?")


def test_directory(tmp_path):
    user_error(run(tmp_path), str(tmp_path), "is a directory")


def test_empty_file(tmp_path):
    spec_error(tmp_path, "", "empty", "'input' and 'layers'")
    spec_error(tmp_path, "# only a comment\n", "empty")


def test_not_utf8(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"input: [3]\n\xff\xfe\n")
    user_error(run(path), str(path), "not UTF-8")


@pytest.mark.parametrize("text, line, fragment", [
    ("input: [3]\nlayers:\n\t- {op: linear, out_features: 2}\n", 3, "tab"),
    ("input: [3\nlayers: []\n", 2, "expected ',' or ']'"),
    ("input: [3]\nlayers:\n  - {op: linear, out_features: 2\n", 4, "invalid YAML"),
    ("input: 'abc\n", 2, "invalid YAML"),
])
def test_invalid_yaml(tmp_path, text, line, fragment):
    spec_error(tmp_path, text, "invalid YAML", fragment, line=line)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n", "null\n"])
def test_not_a_mapping(tmp_path, text):
    spec_error(tmp_path, text, "a spec is a mapping with 'input' and 'layers'", line=1)


def test_huge_file_refused_before_reading(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "w") as f:
        f.write(LINEAR)
        f.write("#" * MAX_FILE_BYTES)
    user_error(run(path), str(path), f"at most {MAX_FILE_BYTES} bytes")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_refused_before_reading():
    user_error(run("/dev/zero"), "/dev/zero", "not a regular file")


def test_alias_bomb_refused_without_expansion(tmp_path):
    # nine levels of ten: 10^9 strings once expanded (hours and many GiB), 91 nodes as written
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = write(tmp_path, "\n".join(levels) + "\ninput: [3]\nlayers: *a9\n")
    user_error(run(path), "expands to more than", "alias bomb")   # refused before construction expands it


def test_shared_alias_below_limit_is_fine(tmp_path):
    text = "defaults: &d {batch: 2}\ninput: [3]\nlayers:\n  - {op: linear, out_features: 4}\n"
    assert run(write(tmp_path, text)).exit_code == 0


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo pwned']",
                                 "!!python/name:os.system", "!!python/object:collections.OrderedDict {}",
                                 "!custom 3"])
def test_unsafe_tags_refused(tmp_path, tag):
    spec_error(tmp_path, f"input: {tag}\nlayers:\n  - {{op: linear, out_features: 4}}\n",
               "tag", "not allowed", line=1)


def test_duplicate_yaml_keys(tmp_path):
    spec_error(tmp_path, "input: [3]\ninput: [4]\nlayers:\n  - {op: linear, out_features: 4}\n",
               "duplicate key 'input'", line=2)
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: linear, out_features: 4, out_features: 5}\n",
               "duplicate key 'out_features'", line=3)


# ---------------------------------------------------------------- top level

def test_unknown_top_level_key(tmp_path):
    msg = spec_error(tmp_path, "input: [3]\nlayer: []\n", "unknown top-level key 'layer'",
                     "did you mean 'layers'?", "valid: name,", line=2)
    assert ": :" not in msg


ODD_VALUES = [     # lists and mappings where a name is expected, NUL, huge numbers: refused, never a crash
    ("input: [3]\x00\nlayers: []\n", ("invalid YAML", "#x0000")),
    ("input: [3]\nlayers:\n  - {op: linear, out_features: " + "9" * 5000 + "}\n",
     ("5000-character integer", "at most 40")),
    ("input: [3]\n---\ninput: [4]\n", ("single document",)),
    ("input: [3]\n3: 3\nlayers:\n  - {op: relu}\n", ("unknown top-level key '3'",)),
    ("input: [3]\nlayers:\n  - {op: relu}\noutput: [relu_0]\n", ("output: no layer named",)),
    ("input: [3]\ndefaults: {batch: null}\nlayers:\n  - {op: relu}\n", ("batch", "got None")),
    ("input: {shape: [3], dtype: [int64]}\nlayers:\n  - {op: relu}\n", ("input.dtype", "int64")),
    ("input: [3]\ndefaults: {dtype: [bf16]}\nlayers:\n  - {op: relu}\n", ("dtype", "bf16")),
    ("input: [3]\ndefaults: {optimizer: {adam: 1}}\nlayers:\n  - {op: relu}\n", ("optimizer", "adamw")),
    ("input: [3]\nlayers:\n  - {block: [mlp]}\n", ("no block named", "defined: none")),
    ("input: [3]\nblocks:\n  b: {params: {null: 3}, layers: [{op: relu}]}\nlayers:\n  - {block: b}\n",
     ("blocks.b.params", "identifiers")),
    ("input: [3]\nblocks:\n  b: {params: {repeat: 3}, layers: [{op: relu}]}\nlayers:\n  - {block: b}\n",
     ("blocks.b.params", "other than block, name, inputs, repeat")),
    ("input: [3]\nblocks:\n  b: {output: [relu_0], layers: [{op: relu}]}\nlayers:\n  - {block: b}\n",
     ("blocks.b.output",)),
]


@pytest.mark.parametrize("text, fragments", ODD_VALUES + [
    ("layers:\n  - {op: linear, out_features: 4}\n", ("missing 'input'",)),
    ("input: [3]\n", ("missing 'layers'",)),
    ("input: [3]\nlayers: []\n", ("layers: must be a non-empty list",)),
    ("input: [3]\nlayers: {op: relu}\n", ("layers: must be a non-empty list",)),
    ("input: [3, 0]\nlayers:\n  - {op: relu}\n", ("positive integers", "[3, 0]")),
    ("input: [3, -2]\nlayers:\n  - {op: relu}\n", ("positive integers",)),
    ("input: three\nlayers:\n  - {op: relu}\n", ("positive integers", "'three'")),
    ("input: {shape: [8], dtype: int8}\nlayers:\n  - {op: relu}\n", ("input.dtype", "int64")),
    ("input: [3]\ndefaults: {batch: 0}\nlayers:\n  - {op: relu}\n", ("batch", "1 to 10^9", "got 0")),
    ("input: [3]\ndefaults: {batch: true}\nlayers:\n  - {op: relu}\n", ("batch", "got True")),
    ("input: [3]\ndefaults: {dtype: fp8}\nlayers:\n  - {op: relu}\n", ("'fp8'", "bf16")),
    ("input: [3]\ndefaults: {optimiser: sgd}\nlayers:\n  - {op: relu}\n", ("did you mean 'optimizer'?",)),
    ("input: [3]\nlayers:\n  - {op: relu}\noutput: relu_1\n", ("output: no layer named 'relu_1'",
                                                               "did you mean 'relu_0'?")),
    ("input: [3]\nlayers:\n  - 7\n", ("layers[0]", "each layer is a mapping")),
])
def test_bad_values(tmp_path, text, fragments):
    spec_error(tmp_path, text, *fragments)


def test_input_too_large(tmp_path):
    spec_error(tmp_path, "input: [1000000, 100000, 100000]\nlayers:\n  - {op: relu}\n", "limit is 10^15", line=1)


# ---------------------------------------------------------------- layers

def test_unknown_op_suggests_close_name(tmp_path):
    spec_error(tmp_path, "input: [3, 8, 8]\nlayers:\n  - {op: conv2, out_channels: 4, kernel_size: 3}\n",
               "layers[0]", "unknown op 'conv2'", "did you mean 'conv2d'?", line=3)


@pytest.mark.parametrize("op", ["null", "[conv2d]", "{a: 1}", "3"])
def test_op_not_a_name(tmp_path, op):
    spec_error(tmp_path, f"input: [3]\nlayers:\n  - {{op: {op}, out_features: 4}}\n", "layers[0]", "op",
               line=3)


def test_layer_without_op(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {name: a, out_features: 4}\n", "layers[0]", "op", line=3)


def test_unknown_argument_suggests_close_name(tmp_path):
    spec_error(tmp_path, "input: [3, 8, 8]\nlayers:\n  - {op: conv2d, out_channels: 4, kernal_size: 3}\n",
               "layers[0]", "'kernal_size'", "did you mean 'kernel_size'?", "kernel_size", line=3)


def test_missing_required_argument(tmp_path):
    spec_error(tmp_path, "input: [3, 8, 8]\nlayers:\n  - {op: conv2d, name: c1, out_channels: 4}\n",
               "layers[0] (conv2d 'c1')", "missing argument 'kernel_size'", line=3)


@pytest.mark.parametrize("value, shown", [("four", "'four'"), ("true", "True"), ("-4", "-4"), ("0", "0"),
                                          ("4.0", "4.0"), ("[4]", "[4]"), ("null", "None")])
def test_wrong_type_for_a_size(tmp_path, value, shown):
    spec_error(tmp_path, f"input: [3, 8, 8]\nlayers:\n  - {{op: conv2d, out_channels: 4,\n"
                         f"     kernel_size: 3, stride: {value}}}\n",
               "layers[0] (conv2d 'conv2d_0').stride", "must be an integer or a list of 2 integers",
               f"got {shown}", line=4)


@pytest.mark.parametrize("value", ["four", "true", "-4", "0"])
def test_wrong_type_for_out_features(tmp_path, value):
    spec_error(tmp_path, f"input: [3]\nlayers:\n  - {{op: linear, out_features: {value}}}\n",
               "out_features", "must be a positive integer", line=3)


@pytest.mark.parametrize("key, value, valid", [("trainable", "yes please", "true or false"),
                                               ("name", "a.b", "without '.'"), ("name", "input", "other than"),
                                               ("name", "[x]", "non-empty string"),
                                               ("name", '"a\\tb"', "printable"),
                                               ("inputs", "[1, 2]", "a layer name or a list of names"),
                                               ("inputs", "[]", "a layer name or a list of names")])
def test_wrong_type_for_layer_keys(tmp_path, key, value, valid):
    spec_error(tmp_path, f"input: [3]\nlayers:\n  - {{op: linear, out_features: 4, {key}: {value}}}\n",
               "layers[0]", key, valid, line=3)


def test_linear_after_conv_without_flatten(tmp_path):
    text = ("input: [3, 8, 8]\nlayers:\n  - {op: conv2d, name: c, out_channels: 4, kernel_size: 3}\n"
            "  - {op: linear, name: fc, out_features: 10}\n")
    spec_error(tmp_path, text, "layers[1] (linear 'fc')", "'c' [1, 4, 6, 6]", "flatten", line=4)


def test_add_of_shapes_that_do_not_broadcast(tmp_path):
    text = ("input: [3, 8, 8]\nlayers:\n  - {op: conv2d, name: a, out_channels: 4, kernel_size: 3}\n"
            "  - {op: conv2d, name: b, inputs: input, out_channels: 5, kernel_size: 3}\n"
            "  - {op: add, name: s, inputs: [a, b]}\n")
    spec_error(tmp_path, text, "layers[2] (add 's')", "do not broadcast", "'a' [1, 4, 6, 6]", "'b' [1, 5, 6, 6]",
               line=5)


@pytest.mark.parametrize("layers, fragments", [
    ("  - {op: conv2d, out_channels: 4, kernel_size: 9}\n", ("smaller than the dilated kernel",)),
    ("  - {op: conv2d, out_channels: 4, kernel_size: 3, groups: 2}\n", ("groups=2 must divide in_channels=3",)),
    ("  - {op: batchnorm1d}\n", ("needs 2 or 3 dims",)),
    ("  - {op: flatten}\n  - {op: reshape, shape: [7, -1]}\n", ("cannot reshape 192",)),
    ("  - {op: softmax, dim: 0}\n", ("batch dim",)),
    ("  - {op: select, dim: 1, index: 3}\n", ("index=3 is out of range for size 3",)),
    ("  - {op: concat, inputs: [input, input], dim: 4}\n", ("dim=4",)),
    ("  - {op: flatten}\n  - {op: matmul, inputs: [flatten_0, flatten_0]}\n", ("inner sizes differ",)),
    ("  - {op: maxpool2d, kernel_size: 3, padding: 2}\n", ("at most half the kernel size",)),
])
def test_other_shape_errors_name_layer_and_input(tmp_path, layers, fragments):
    spec_error(tmp_path, "input: [3, 8, 8]\nlayers:\n" + layers, *fragments, "(input from '")


def test_recurrent_layer_count_from_a_typo_is_refused(tmp_path):
    spec_error(tmp_path, "input: [4, 8]\nlayers:\n  - {op: lstm, hidden_size: 4, num_layers: 10000000}\n",
               "num_layers: must be a positive integer up to 1000", line=3)


@pytest.mark.parametrize("ref, fragments", [("aa", ("no earlier layer named 'aa'", "did you mean 'a'?")),
                                            ("later", ("no earlier layer named 'later'", "no cycles"))])
def test_reference_to_missing_or_later_layer(tmp_path, ref, fragments):
    text = ("input: [3]\nlayers:\n  - {op: linear, name: a, out_features: 4}\n"
            f"  - {{op: linear, inputs: {ref}, out_features: 4}}\n  - {{op: linear, name: later, out_features: 4}}\n")
    spec_error(tmp_path, text, "layers[1].inputs", *fragments, line=4)


def test_layer_cannot_read_itself(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: linear, name: a, inputs: a, out_features: 4}\n",
               "no earlier layer named 'a'", line=3)


def test_duplicate_layer_names(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: linear, name: a, out_features: 4}\n"
                         "  - {op: linear, name: a, out_features: 4}\n", "layers[1]", "'a' is used twice", line=4)


def test_wrong_number_of_inputs(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: add, inputs: input}\n", "at least 2 input(s), got 1")
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: relu, inputs: [input, input]}\n",
               "exactly 1 input(s), got 2")


def test_ids_fed_to_a_conv(tmp_path):
    spec_error(tmp_path, "input: {shape: [16], dtype: int64}\nlayers:\n  - {op: conv1d, out_channels: 4,"
                         " kernel_size: 3}\n", "needs floating-point values", "'input' gives [1, 16] ids",
               "start with an embedding", line=3)


def test_floats_fed_to_an_embedding(tmp_path):
    spec_error(tmp_path, "input: [16]\nlayers:\n  - {op: embedding, num_embeddings: 10, embedding_dim: 4}\n",
               "needs token ids (int64)", line=3)


def test_tie_to_missing_layer(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: linear, name: a, out_features: 3}\n"
                         "  - {op: linear, name: b, out_features: 3, tie: zz}\n",
               "(linear 'b').tie", "no earlier top-level layer named 'zz'", line=4)


def test_tie_shape_mismatch(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: linear, name: a, out_features: 4}\n"
                         "  - {op: linear, name: b, out_features: 4, tie: a}\n",
               "(linear 'b').tie", "[4, 4]", "'a' weight [4, 3]", line=4)


def test_tie_to_a_layer_without_weight(tmp_path):
    spec_error(tmp_path, "input: [3]\nlayers:\n  - {op: relu, name: r}\n"
                         "  - {op: linear, name: b, out_features: 3, tie: r}\n", "(linear 'b').tie", "'r'", line=4)


# ---------------------------------------------------------------- blocks and repeats

BLOCK = """input: [4]
blocks:
  mlp:
    params: {width: null}
    layers:
      - {op: linear, out_features: WIDTH}
      - {op: relu}
layers:
"""


def block_spec(width: str, use: str) -> str:
    return BLOCK.replace("WIDTH", width) + f"  - {use}\n"


def test_unknown_block(tmp_path):
    spec_error(tmp_path, block_spec("$width", "{block: mpl, width: 4}"), "no block named 'mpl'",
               "did you mean 'mlp'?", "defined: mlp", line=9)


def test_block_missing_parameter(tmp_path):
    spec_error(tmp_path, block_spec("$width", "{block: mlp}"), "block 'mlp' needs parameter 'width'", line=9)


def test_block_unknown_parameter(tmp_path):
    spec_error(tmp_path, block_spec("$width", "{block: mlp, width: 4, widht: 5}"), "'widht'",
               "valid: block, name, inputs, repeat, module, width", line=9)


@pytest.mark.parametrize("expr, fragments", [
    ('"${width * }"', ("'${width * }' is not an expression", "${name * 2}")),
    ('"${widht * 2}"', ("uses 'widht'", "known: seq_len, width")),
    ('"${width / 3}"', ("4 / 3 is not a whole number", "use //")),
    ('"${width // 0}"', ("divides by zero",)),
    ('"${width ** 2}"', ("only integers, parameter names",)),
    ('"${width.real}"', ("only integers, parameter names",)),
    ('"${__import__(\'os\')}"', ("only integers, parameter names",)),
    ('"${width - 4}"', ("must be a positive integer", "got 0")),
    ('"${width * 10**30}"', ("only integers",)),
    ('"${width * 1000000000 * 1000000000 * 1000}"', ("larger than 10^18",)),
    ("$seq_len", ("'seq_len', which is not set", "--seq-len")),
])
def test_bad_block_expression(tmp_path, expr, fragments):
    spec_error(tmp_path, block_spec(expr, "{block: mlp, width: 4}"), "blocks.mlp.layers[0] (linear 'mlp_0.linear_0')"
               ".out_features", *fragments, line=6)


@pytest.mark.parametrize("repeat, shown", [("0", "0"), ("-3", "-3"), ("10000000000000", "10000000000000"),
                                           ("true", "True"), ("two", "'two'"), ("2.5", "2.5")])
def test_bad_repeat(tmp_path, repeat, shown):
    spec_error(tmp_path, block_spec("$width", f"{{block: mlp, width: 4, repeat: {repeat}}}"), "layers[0].repeat",
               "from 1 to 10^12", f"got {shown}", line=9)


def test_block_cannot_use_a_block(tmp_path):
    text = BLOCK.replace("WIDTH", "$width").replace("      - {op: relu}", "      - {block: mlp}")
    spec_error(tmp_path, text + "  - {block: mlp, width: 4}\n", "a block cannot use another block")


def test_block_output_missing(tmp_path):
    text = BLOCK.replace("WIDTH", "4").replace("    layers:", "    output: nope\n    layers:")
    spec_error(tmp_path, text + "  - {block: mlp, width: 4}\n", "blocks.mlp.output: no layer named 'nope'")


@pytest.mark.parametrize("blocks", ["blocks: [1]", "blocks:\n  mlp: 3", "blocks:\n  mlp: {layers: []}",
                                    "blocks:\n  mlp: {layers: [{op: relu}], params: [width]}"])
def test_bad_block_definition(tmp_path, blocks):
    spec_error(tmp_path, f"input: [4]\n{blocks}\nlayers:\n  - {{op: relu}}\n", "blocks")


# ---------------------------------------------------------------- command-line options

def test_batch_zero_is_clicks_error(tmp_path):
    result = run(write(tmp_path, LINEAR), "--batch", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--batch'" in result.stderr


def test_bad_dtype_is_clicks_error(tmp_path):
    result = run(write(tmp_path, LINEAR), "--dtype", "fp8")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--dtype'" in result.stderr and "'bf16'" in result.stderr


def test_seq_len_override_too_large_for_a_table(tmp_path):
    text = ("input: {shape: [$seq_len], dtype: int64}\ndefaults: {seq_len: 8}\nlayers:\n"
            "  - {op: embedding, num_embeddings: 50, embedding_dim: 4}\n"
            "  - {op: positional_embedding, num_embeddings: 8}\n")
    assert run(write(tmp_path, text)).exit_code == 0
    spec_error(tmp_path, text, "num_embeddings=8 is smaller than the 9 rows", args=("--seq-len", "9"))


def test_errors_never_print_a_traceback_even_in_the_library(tmp_path):
    """The library raises SizingError (not another type) with the same one-line text."""
    import sizing

    path = write(tmp_path, "input: [3]\nlayers:\n  - {op: conv2, out_channels: 4}\n")
    with pytest.raises(sizing.SizingError) as info:
        sizing.estimate(path)
    assert str(info.value).startswith(f"{path}:3: ") and "\n" not in str(info.value)
    assert info.value.file == path and info.value.line == 3


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_unreadable_file():
    user_error(run("/proc/self/mem"), "/proc/self/mem", "cannot read")
