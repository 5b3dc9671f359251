"""The ``sizing`` command: thin wrappers that parse, call the library and hand the result to a writer.

Heavy modules (numba, numpy) are imported only inside the commands that use them.
"""
from __future__ import annotations

import functools
import os
import sys

import click

from .common.errors import SizingError
from .common.text import terminal


def _clean_errors(fn):
    """User errors become one line on stderr and exit code 2; never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SizingError as e:
            click.echo(f"error: {terminal(e)}", err=True)
            sys.exit(2)
        except (BrokenPipeError, KeyboardInterrupt):
            sys.exit(130)
        except Exception as e:  # a bug of ours: one line, and how to see more
            if os.environ.get("SIZING_DEBUG"):
                raise
            click.echo(f"internal error: {type(e).__name__}: {terminal(e)} (set SIZING_DEBUG=1 for the traceback; "
                       "please report it)", err=True)
            sys.exit(3)
    return wrapper


class OneLineErrors(click.Group):
    """click's usage errors (a missing argument, a bad option value) as one ``error:`` line and exit 2, like every
    other refusal, instead of click's three lines of usage."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.UsageError as e:
            names, ctx = [], e.ctx          # the subcommands' names, whatever started the program (python -m)
            while ctx is not None and ctx.parent is not None:
                names.append(ctx.info_name)
                ctx = ctx.parent
            command = "".join(f" {n}" for n in reversed(names))
            click.echo(f"error: {terminal(e.format_message())} (see `sizing{command} --help`)", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"error: {terminal(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            sys.exit(130)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sizing")
def main():
    """FLOPs vs FLOPS: exact model costs and the hardware to run them."""


hwdb_option = click.option(
    "--hwdb", "hwdb_files", multiple=True, metavar="FILE",
    help="A hardware file that adds or overrides devices by id (repeatable; after those in $SIZING_HWDB).")
wide_option = click.option("--wide", is_flag=True, help="Tables at full width (default: fit the terminal, $COLUMNS, "
                           "or 80 columns when piped, folding or leaving out columns).")


@main.command()
@click.argument("spec")
@click.option("--batch", type=click.IntRange(1, 10 ** 9), help="Samples per step (default: the spec's, else 1).")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16", "fp64"]),
              help="Compute precision; bf16/fp16 mean mixed precision with fp32 master weights.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]),
              help="Optimizer for memory and update FLOPs (default: the spec's, else adamw).")
@click.option("--seq-len", type=click.IntRange(1, 10 ** 9), help="Sequence length for token-id inputs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--device", metavar="NAME", help="Predict training time on this device: an hwdb id or loose name "
              "(h100, 'mi300'), or 'local' (this machine's bench profile).")
@click.option("--devices", type=click.IntRange(1, 10 ** 7),
              help="Number of devices (default: the fewest that fit, or that meet --deadline).")
@click.option("--global-batch", metavar="N", help="Samples (sequences) per optimizer step over the whole cluster "
              "(default: --batch if given, else 4M tokens for token models and 256 samples otherwise).")
@click.option("--deadline", metavar="TIME", help="Train within TIME (e.g. 30d): the fewest devices that do.")
@click.option("--objective", type=click.Choice(["time", "cost"]), default="time", show_default=True,
              help="time: the fastest layout on the devices; cost: the fewest device-hours (maybe on fewer).")
@click.option("--tensor-parallel", type=click.IntRange(1, 10 ** 4), help="Pin the tensor-parallel degree.")
@click.option("--pipeline-parallel", type=click.IntRange(1, 10 ** 4), help="Pin the pipeline-parallel degree.")
@click.option("--micro-batch", type=click.IntRange(1, 10 ** 6), help="Pin the samples per micro-batch.")
@click.option("--expert-parallel", type=click.IntRange(1, 10 ** 6), help="Pin the expert-parallel degree (MoE).")
@click.option("--context-parallel", type=click.IntRange(1, 10 ** 6),
              help="Pin the context-parallel degree (long sequences).")
@click.option("--tokens", metavar="N", help="Tokens per epoch, e.g. 2e12 (token-id models).")
@click.option("--samples", metavar="N", help="Samples per epoch, e.g. 1.28e6.")
@click.option("--epochs", type=click.IntRange(1, 10 ** 6), default=1, show_default=True)
@click.option("--precision", type=click.Choice(["tf32", "fp8"]),
              help="Run matrix products in tf32 (fp32 storage) or fp8 (bf16/fp16 storage).")
@click.option("--zero", type=click.IntRange(0, 3),
              help="Pin the ZeRO stage: shard optimizer state (1), gradients (2), weights (3) (default: searched).")
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]),
              help="Pin activation recomputation (default: searched).")
@click.option("--pue", type=float,
              help="Facility power / IT power, for energy (default: the industry average in sizing/predict/calibration.yaml).")
@click.option("--network-gbs", type=float,
              help="Inter-node bandwidth per device, GB/s each way (default: one 400 Gb/s NIC per device).")
@click.option("--finetune", type=click.Choice(["full", "lora", "qlora"]),
              help="Fine-tune: every weight (full), LoRA adapters on a frozen 16-bit base, or QLoRA (a 4-bit base).")
@click.option("--lora-rank", type=click.IntRange(1, 10 ** 6), help="LoRA rank r (default 8).")
@click.option("--lora-targets", metavar="NAMES", help="Linear layers that get adapters, as PEFT's target_modules "
              "match the HF module names: comma-separated names or their tails (q_proj,v_proj, layers.5.mlp.down_proj, "
              "experts.3.gate_proj), a regular expression over the full names, or all-linear (default).")
@click.option("--inference", is_flag=True, help="Serve the language model instead of training it (with --device).")
@click.option("--concurrency", type=click.IntRange(1, 10 ** 9), help="Serving: sequences in flight (default 1).")
@click.option("--prompt-tokens", type=click.IntRange(1, 10 ** 8),
              help="Serving: prompt tokens per request (default: --seq-len, else the spec's).")
@click.option("--output-tokens", type=click.IntRange(1, 10 ** 8),
              help="Serving: generated tokens per request (default 256).")
@click.option("--weights", type=click.Choice(["bf16", "fp16", "fp8", "int8", "int4"]),
              help="Serving: weight format (int8/int4 weight-only, groups of 128; default: the model's dtype).")
@click.option("--kv-cache", type=click.Choice(["bf16", "fp16", "fp8"]), help="Serving: KV cache precision.")
@click.option("--ttft-ms", type=float, help="Serving: time-to-first-token target, ms.")
@click.option("--tpot-ms", type=float, help="Serving: time-per-output-token target, ms.")
@hwdb_option
@click.option("--check", "then_check", is_flag=True, help="Then run `sizing check` on the same spec and batch.")
@click.option("--emit-yaml", metavar="FILE", help="Also write the model as a YAML spec to FILE ('-': print only "
              "the YAML), with the options given as its defaults: a config.json or ONNX file made editable.")
@click.option("--allow-unmapped", is_flag=True, help="ONNX: count a graph with ops not mapped yet (as zero; the "
              "totals then say they are partial).")
@click.option("--force", is_flag=True, help="Overwrite an existing --emit-yaml file.")
@wide_option
@_clean_errors
def estimate(spec, batch, dtype, optimizer, seq_len, fmt, device, devices, global_batch, deadline, objective,
             tensor_parallel, pipeline_parallel, micro_batch, expert_parallel, context_parallel, tokens, samples, epochs, precision, zero, recompute, pue,
             network_gbs, finetune, lora_rank, lora_targets, inference, concurrency, prompt_tokens, output_tokens,
             weights, kv_cache, ttft_ms, tpot_ms, hwdb_files, then_check, emit_yaml, allow_unmapped, force, wide):
    """Exact params, MACs, FLOPs (forward, backward, training step) and training memory of SPEC; with --device,
    the planner: the fastest parallel layout (tensor, pipeline, data parallel, ZeRO, recomputation, micro-batch)
    that fits, its step time, time to train, device-hours, energy and memory per device, and the next best.

    SPEC is a YAML model spec (docs/spec.md), the name of a zoo model (e.g. resnet50), a Hugging Face config.json
    (llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, olmo2, gpt2, gpt_neox, bert) or an ONNX file (needs `pip install 'sizing[onnx]'`).
    A causal language model also gets prefill and decode FLOPs, KV cache and inference memory.
    """
    options = dict(locals())          # the library call's options: all but the command line's own
    for own in ("spec", "fmt", "then_check", "emit_yaml", "force", "wide"):
        del options[own]
    from .common.table import terminal_width
    from .model.report import WRITERS
    from .predict.plan import estimate_answer, load_estimate
    from .predict.report import prediction_table, serving_table

    loaded = load_estimate(spec, **options)
    if emit_yaml and _emit_yaml(spec, emit_yaml, allow_unmapped,
                                {"batch": batch, "dtype": dtype, "optimizer": optimizer, "seq_len": seq_len}, force):
        return
    for w in loaded[0].graph.warnings:
        click.echo(f"warning: {terminal(w)}", err=True)
    answer = estimate_answer(spec, loaded, check=then_check, **options)
    width = terminal_width(wide)
    if answer.kind is None and then_check:
        tune = None if finetune is None else (finetune, lora_rank, lora_targets)
        return _run_check(spec, fmt, width, answer.report, batch=batch, seq_len=seq_len, finetune=tune)
    if fmt != "table" or answer.kind is None:
        click.echo(_estimate_text(answer.report, fmt, width) if answer.kind is None else
                   WRITERS[fmt](answer.report).rstrip("\n"))
        return
    d = {k: v for k, v in answer.report.items() if k != answer.kind}
    table = prediction_table if answer.kind == "prediction" else serving_table
    click.echo(_estimate_text(d, fmt, width, serving=answer.kind == "inference") + "\n\n"
               + table(answer.prediction, width))


def _estimate_text(d: dict, fmt: str, width: int | None, serving: bool = False) -> str:
    """The estimate in a table (fitted to ``width``), JSON or CSV writer; in a table, a language model's figures
    follow; ``serving``: the forward pass only (no backward, training step or training memory)."""
    from .model.report import WRITERS, estimate_table, figures_table

    if fmt != "table":
        return WRITERS[fmt](d).rstrip("\n")
    return estimate_table(d, width, serving) + ("\n\n" + figures_table(d["language_model"], width, serving)
                                                if "language_model" in d else "")


def _emit_yaml(spec: str, target: str, allow_unmapped: bool, sizes: dict, force: bool) -> bool:
    """Writes SPEC as a YAML spec to TARGET ('-': stdout); True when it went to stdout (nothing else to print)."""
    from .common.files import check_writable, write_text
    from .model.estimate import resolve
    from .model.importers import emit_yaml, load_spec

    if target != "-":
        check_writable(target, force, "--emit-yaml")
    path = resolve(spec)
    text = emit_yaml(load_spec(path, allow_unmapped), path, **sizes)
    if target == "-":
        click.echo(text.rstrip("\n"))
        return True
    write_text(target, text, force, "--emit-yaml")
    click.echo(f"wrote {terminal(target)}", err=True)
    return False


@main.group()
def hw():
    """The hardware database: devices with their memory, bandwidth, dense peaks, power and prices."""


@hw.command("list")
@click.option("--kind", type=click.Choice(["gpu", "cpu", "accelerator"]), help="Only devices of this kind.")
@click.option("--sort", metavar="KEY",
              help="Sort by a precision's peak (fp64 ... int8), memory_gb, memory_bw_gbs, tdp_w, interconnect_gbs, "
                   "release_year or price (largest first), or id or vendor.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@hwdb_option
@wide_option
@_clean_errors
def hw_list(kind, sort, fmt, hwdb_files, wide):
    """Every device of the database (shipped, this machine's bench profile, your overrides)."""
    from .hardware.devices import load_hwdb, sort_devices
    from .common.table import terminal_width
    from .hardware.report import devices_csv, devices_json, devices_table

    devices = [d for d in load_hwdb(hwdb_files).values() if kind is None or d.kind == kind]
    if sort:
        devices = sort_devices(devices, sort)
    writers = {"table": lambda ds: devices_table(ds, sort, terminal_width(wide)), "json": devices_json,
               "csv": devices_csv}
    click.echo(writers[fmt](devices).rstrip("\n"))


@hw.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@hwdb_option
@wide_option
@_clean_errors
def hw_show(name, fmt, hwdb_files, wide):
    """One device, every figure with its source. NAME is an id or a loose name (h100, 'mi300', 'gaudi 3');
    a family name (h100) lists the family and shows its most common part; any other name several devices match
    lists them."""
    import json

    from .common.table import terminal_width
    from .hardware.devices import family_default, find_device, load_hwdb, match_devices
    from .hardware.report import device_text, family_text

    db = load_hwdb(hwdb_files)
    d = find_device(db, name)
    family = match_devices(db, name) if family_default(match_devices(db, name)) else []
    if fmt == "json":
        click.echo(json.dumps(d.to_record(), indent=2))
    else:
        width = terminal_width(wide)
        click.echo((family_text(name, d, family, width) + "\n\n" if family else "") + device_text(d, width))


def _progress(message: str):
    """Progress on stderr: one line rewritten in place on a terminal, one line per message otherwise."""
    if sys.stderr.isatty():
        click.echo("\r\033[K" + message[:100], err=True, nl=False)
    else:
        click.echo(message, err=True)


def _run_check(spec, fmt, width, estimate_dict=None, **options):
    """Runs ``sizing.check``, prints it (after the estimate when given), exits 1 when the check fails."""
    from .execute.report import check_table
    from .execute.check import check as run
    from .common.progress import progress_bar, progress_lines
    from .execute.model import CheckFailure

    try:
        result = run(spec, progress=progress_bar(sys.stderr) or progress_lines(sys.stderr), **options)
    except CheckFailure as e:
        click.echo(f"check failed: {e}", err=True)
        sys.exit(1)
    finally:
        if sys.stderr.isatty():
            click.echo("\r\033[K", err=True, nl=False)
    d = result.to_dict()
    if fmt == "json":
        import json
        click.echo(json.dumps(d if estimate_dict is None else {**estimate_dict, "check": d}, indent=2))
    else:
        if estimate_dict is not None:
            click.echo(_estimate_text(estimate_dict, fmt, width) + "\n")
        click.echo(check_table(d, width))
    if not result.ok:
        sys.exit(1)


@main.command("check")
@click.argument("spec")
@click.option("--batch", type=click.IntRange(1, 10 ** 9), help="Samples per step (default: the spec's, else 1).")
@click.option("--seq-len", type=click.IntRange(1, 10 ** 9), help="Sequence length for token-id inputs.")
@click.option("--steps", type=click.IntRange(1, 10 ** 4), default=3, show_default=True, help="SGD steps to run.")
@click.option("--lr", type=click.FloatRange(0, min_open=True),
              help="SGD learning rate (default: chosen so the first step lowers the loss by about 5% to first order).")
@click.option("--loss", type=click.Choice(["cross_entropy", "nll", "mse"]),
              help="Default: cross_entropy after a final linear layer (logits), nll after a softmax, else mse.")
@click.option("--full", is_flag=True, help="Run the real size even when it is too large for this machine's memory "
              "or for about a minute (else batch, seq_len and repeats are reduced, and the output says so).")
@click.option("--shrink", type=click.IntRange(1, 4096),
              help="Divide every hidden width by this in the gradient check's small instance (default: the "
              "smallest power of two that keeps its finite differences to about half a minute).")
@click.option("--seed", type=click.IntRange(0, 2 ** 31), default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@wide_option
@_clean_errors
def check(spec, batch, seq_len, steps, lr, loss, full, shrink, seed, fmt, wide):
    """Run real training steps of SPEC in Numba kernels and check them against the analytic counts.

    Per layer: executed MACs, FLOPs and backward FLOPs against `sizing estimate`'s; gradients against finite
    differences (float64, batch 2); the loss over the steps; time per layer and step. Exit code 1 when any
    executed count differs from the analytic one or the gradient check fails.
    """
    from .common.table import terminal_width

    _run_check(spec, fmt, terminal_width(wide), batch=batch, seq_len=seq_len, steps=steps, lr=lr, loss=loss, full=full,
               shrink=shrink, seed=seed)


@main.command()
@click.option("--quick", is_flag=True, help="Fewer sizes and repeats, no layer-class chains: about 3 s once "
              "Numba's cache is warm, plus the first touch of STREAM's arrays (4x the last-level cache: about 8 s "
              "for a 260 MiB one).")
@click.option("--threads", type=click.IntRange(1), help="Threads (default: every CPU of the affinity mask).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--save", "save_to", metavar="[FILE]", is_flag=False, flag_value="",
              help="Also write this machine as a device record (hwdb format) to FILE, for --hwdb FILE.")
@click.option("--no-save", is_flag=True,
              help="Do not update this machine's profile ($XDG_CACHE_HOME/sizing/local.yaml).")
@_clean_errors
def bench(quick, threads, fmt, save_to, no_save):
    """This machine's measured FLOPS (FMA peak, GEMM) and memory bandwidth (STREAM) against its theoretical
    peak, and our executor's fixed cost per layer call and per step, and per layer class its fixed cost and
    share of the roofline (PyTorch's too when torch is importable); saved as the device 'local'.

    Every figure is min / median / best over its repeats (three rounds of the whole sequence, pooled); peaks
    report the best, GEMM and STREAM the median."""
    from .execute.calls import call_chain, layer_chains
    from .hardware.bench import command

    command(quick, threads, fmt, save_to, no_save, click.echo, call_chain(), layer_chains())


@main.command()
@click.argument("spec")
@click.option("--samples", metavar="N", help="Training: samples per epoch, e.g. 1.28e6.")
@click.option("--tokens", metavar="N", help="Training: tokens per epoch, e.g. 2e11 (token-id models).")
@click.option("--epochs", metavar="N", default="1", show_default=True)
@click.option("--deadline", metavar="TIME", help="Training: time to train at most, e.g. 24h, 14d.")
@click.option("--qps", metavar="N", help="Serving: samples per second the deployment must serve.")
@click.option("--latency-ms", metavar="MS", help="Serving: milliseconds one request batch may take.")
@click.option("--batch", metavar="N", help="Batch per request (serving), or the global batch when --global-batch "
              "is not given (training; default: the spec's).")
@click.option("--global-batch", metavar="N", help="Training: samples (sequences) per optimizer step over the whole "
              "cluster (default: 4M tokens for token models, 256 samples otherwise).")
@click.option("--seq-len", metavar="N", help="Sequence length for token-id inputs.")
@click.option("--precision", metavar="P", help="fp32, tf32, bf16, fp16, fp8 or fp64 (default: the spec's dtype).")
@click.option("--budget", metavar="AMOUNT", help="Most the purchase may cost, in --currency, e.g. 2e9.")
@click.option("--currency", default="USD", show_default=True, help="USD or KRW (KRW needs --fx).")
@click.option("--fx", metavar="RATE", help="Units of --currency per US dollar, stated in the report.")
@click.option("--lang", default="en", show_default=True, help="Report language: en or ko.")
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE (its suffix picks the format).")
@click.option("--force", is_flag=True, help="Overwrite an existing --output file.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json", "csv"]), help="Default: md, or -o's suffix.")
@click.option("--candidates", metavar="NAMES", help="Devices to consider, comma-separated (default: all).")
@click.option("--prices", metavar="FILE", help="A vendor's prices: hwdb records of price, node_price, cloud.")
@click.option("--horizon", metavar="TIME", help="Cost-of-ownership horizon (default 3y).")
@click.option("--pue", metavar="X", help="Facility power / IT power (default: sizing/predict/calibration.yaml's).")
@click.option("--kwh-price", metavar="AMOUNT", help="Electricity per kWh in --currency (default: US$0.08).")
@click.option("--node-cost", metavar="AMOUNT", help="Server cost per node without its devices, in --currency.")
@click.option("--max-devices", metavar="N", help="Most devices to consider (default 131072).")
@click.option("--tax-rate", metavar="PCT", help="Tax or VAT in percent on the purchase lines (default: none).")
@click.option("--finetune", type=click.Choice(["full", "lora", "qlora"]), help="Training: fine-tune (full, LoRA or "
              "QLoRA adapters on a frozen base).")
@click.option("--lora-rank", type=click.IntRange(1, 10 ** 6), help="LoRA rank r (default 8).")
@click.option("--lora-targets", metavar="NAMES", help="Linear layers that get adapters: HF module names or their "
              "tails, comma-separated, or a regular expression (default all-linear).")
@click.option("--concurrency", metavar="N", help="Serving a language model: requests in flight (or give --qps).")
@click.option("--prompt-tokens", metavar="N", help="Serving a language model: prompt tokens per request.")
@click.option("--output-tokens", metavar="N", help="Serving a language model: output tokens per request (256).")
@click.option("--weights", type=click.Choice(["bf16", "fp16", "fp8", "int8", "int4"]),
              help="Serving a language model: weight format.")
@click.option("--kv-cache", type=click.Choice(["bf16", "fp16", "fp8"]), help="Serving a language model: KV cache.")
@click.option("--ttft-ms", metavar="MS", help="Serving a language model: time-to-first-token target.")
@click.option("--tpot-ms", metavar="MS", help="Serving a language model: time-per-output-token target.")
@hwdb_option
@_clean_errors
def quote(spec, **options):
    """Recommend what to buy to train SPEC by a deadline (or serve it at a target) and write a quote: line items
    with sourced prices, cost of ownership, cloud alternative, alternatives and assumptions (md, html, json, csv)."""
    from .quote.build import build_quote
    from .quote.writers import WRITERS, format_for

    from .common.files import check_writable, write_text

    output, force, lang = options.pop("output"), options.pop("force"), options.pop("lang")
    fmt = format_for(options.pop("fmt"), output)
    if output:
        check_writable(output, force)
    if lang not in ("en", "ko"):
        raise SizingError(f"--lang: '{lang}' is not one of en, ko")
    tty = sys.stderr.isatty()      # the search takes well under a second: progress only on a terminal
    quote = build_quote(spec, progress=_progress if tty else None, **options)
    if tty:
        click.echo("\r\033[K", err=True, nl=False)
    report = WRITERS[fmt](quote, lang)
    if output:
        write_text(output, report, force)
        click.echo(f"wrote {terminal(output)}", err=True)
    else:
        click.echo(report.rstrip("\n"))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; another than this machine's own prints a warning.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@_clean_errors
def web(host, port, open_browser):
    """A local web app: the quote form and page, and POST /api/quote and /api/estimate (docs/web.md); needs
    Flask (pip install -e '.[web]')."""
    from .web import serve

    serve(host, port, open_browser, {"estimate": estimate, "quote": quote})


if __name__ == "__main__":
    main()
