"""A web request -> the command line's arguments: keys are the commands' long option names, values go through the
command's own click parser (so the web refuses what the command line refuses, with the same message), and the
model is a zoo name, an inline spec or Hugging Face config, or an uploaded file written into a private temporary
folder."""
from __future__ import annotations

import hashlib
import json
import os
import re

import click

from ..common.errors import SizingError, closest
from ..common.yamlsafe import MAX_FILE_BYTES

# options a web caller may not give: they name files on the server, write files, or pick the output format
NOT_OVER_THE_WEB = {"quote": {"output", "force", "format", "hwdb", "prices"},
                    "estimate": {"format", "hwdb", "check", "emit-yaml", "force"}}
TRUE, FALSE = ("true", "on", "1", "yes"), ("false", "off", "0", "no", "")
UPLOAD_KINDS = {".yaml": "a YAML spec", ".yml": "a YAML spec", ".json": "a Hugging Face config.json",
                ".onnx": "an ONNX file"}


def long_options(command: click.Command, kind: str) -> dict[str, click.Option]:
    """The command's options a web caller may give, by long name without the dashes ('global-batch')."""
    out = {}
    for p in command.params:
        names = [o[2:] for o in p.opts if o.startswith("--")] if isinstance(p, click.Option) else []
        if names and names[0] not in NOT_OVER_THE_WEB[kind]:
            out[names[0]] = p
    return out


def _text(value) -> str:
    """A JSON number or string as the command line would read it: a whole float without its '.0' (1.28e6 ->
    '1280000', so integer options take it)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return str(value)


def arguments(values: dict, options: dict[str, click.Option]) -> list[str]:
    """``--name=value`` arguments for ``values`` (keys: long names, '_' read as '-'); unknown keys are an error that
    names the valid ones. A flag takes true/false."""
    out = []
    for key, value in values.items():
        name = str(key).replace("_", "-")
        opt = options.get(name)
        if opt is None:
            raise SizingError(f"unknown key '{key}'{closest(name, options)}; valid keys: model, "
                              f"{', '.join(sorted(options))}")
        if opt.is_flag:
            word = str(value).lower()
            if value is not True and value is not False and word not in TRUE + FALSE:
                raise SizingError(f"{name}: give true or false, got {value!r}")
            if value is True or word in TRUE:
                out.append(f"--{name}")
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SizingError(f"{name}: give a number or a string, got {type(value).__name__}")
        out.append(f"--{name}={_text(value)}")
    return out


def parse(command: click.Command, kind: str, spec: str, args: list[str]) -> dict:
    """The command's parameters for ``args`` by its own parser; a refusal is the command line's one line."""
    try:
        ctx = command.make_context(kind, [*args, "--", spec])
    except click.UsageError as e:
        raise SizingError(f"{e.format_message()} (see `sizing {kind} --help`)") from None
    return ctx.params


def safe_name(filename: str, suffix: str) -> str:
    """The base name of an uploaded file reduced to letters, digits, '.', '-' and '_' (never a path)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename.replace("\\", "/"))).lstrip(".")
    return base if base.endswith(suffix) and len(base) > len(suffix) else f"model{suffix}"


def model_file(folder: str, model=None, upload=None) -> tuple[str, str, str]:
    """(spec to hand the command, the name the user knows it by, a digest of its content) for a zoo name, an inline
    spec or HF config (a dict), or an upload (filename, bytes); files go into ``folder`` only."""
    from ..model.estimate import zoo_names

    if upload is not None:
        filename, data = upload
        suffix = os.path.splitext(filename.lower())[1]
        if suffix not in UPLOAD_KINDS:
            raise SizingError(f"upload: '{filename}' is not a .yaml or .yml spec, a config.json or an .onnx file")
        if len(data) > MAX_FILE_BYTES:
            raise SizingError(f"upload: over {MAX_FILE_BYTES} bytes; {UPLOAD_KINDS[suffix]} may be at most "
                              f"{MAX_FILE_BYTES} bytes")
        name = safe_name(filename, suffix)
    elif isinstance(model, dict):
        import yaml
        hf = "model_type" in model
        name = "config.json" if hf else "spec.yaml"
        data = (json.dumps(model) if hf else yaml.safe_dump(model, sort_keys=False)).encode()
    elif isinstance(model, str) and model.strip():
        if model.strip() not in zoo_names():
            raise SizingError(f"model: '{model}' is not a zoo model{closest(model, zoo_names())} (zoo: "
                              f"{', '.join(zoo_names())}); upload a file or give the spec inline")
        return model.strip(), model.strip(), f"zoo:{model.strip()}"
    elif model is None or model == "":
        raise SizingError("model: choose a zoo model, or give a spec (YAML, an HF config.json or ONNX)")
    else:
        raise SizingError(f"model: give a zoo name, a spec object or an HF config object, got {type(model).__name__}")
    path = os.path.join(folder, name)
    with open(path, "xb") as f:
        f.write(data)
    return path, name, f"{name}:{hashlib.sha256(data).hexdigest()}"
