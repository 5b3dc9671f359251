"""What a prediction is asked about: one ``Workload`` for training and inference alike.

Training: ``samples`` or ``tokens`` per epoch, ``epochs``, the per-replica ``batch``, the storage ``dtype``, the
compute ``precision`` and the ``optimizer``. Inference: the request ``batch``, the sizes (``seq_len``) and a target
``throughput`` (samples/s over the whole deployment) or ``latency_s`` (seconds per request batch).

``batch`` is what one model replica processes per step (the graph's batch): with data parallelism of degree d the
global batch is ``batch * d``. The compute precision defaults to the storage dtype; ``tf32`` (fp32 storage) and
``fp8`` (bf16/fp16 storage, as NVIDIA's Transformer Engine keeps activations in 16 bits) change only the peak that
matrix products run at, never the bytes moved.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..common.errors import SizingError

KINDS = ("training", "inference")
# storage dtype -> compute precisions it may run at (the first is the default)
COMPUTE = {"fp64": ("fp64",), "fp32": ("fp32", "tf32"), "bf16": ("bf16", "fp8"), "fp16": ("fp16", "fp8")}
MAX_COUNT = 10 ** 18          # samples or tokens: far past any training run, small enough to stay exact


def _positive(name: str, value, whole: bool = True):
    number = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not number or not 0 < value < float("inf"):
        raise SizingError(f"{name}: must be a positive {'integer' if whole else 'number'}, got {value!r}")


@dataclass(frozen=True)
class Workload:
    kind: str = "training"
    batch: int = 1
    dtype: str = "fp32"
    precision: str | None = None          # None: the dtype's own precision
    optimizer: str = "adamw"
    seq_len: int | None = None            # tokens per sample for token-id models (None: the spec's)
    samples: int | None = None            # training: samples per epoch
    tokens: int | None = None             # training: tokens per epoch (token-id models), instead of samples
    epochs: int = 1
    throughput: float | None = None       # inference: samples/s the deployment must serve
    latency_s: float | None = None        # inference: seconds one request batch may take

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SizingError(f"workload kind '{self.kind}' is not one of {', '.join(KINDS)}")
        if self.dtype not in COMPUTE:
            raise SizingError(f"dtype '{self.dtype}' is not one of {', '.join(COMPUTE)}")
        if self.precision is not None and self.precision not in COMPUTE[self.dtype]:
            raise SizingError(f"precision '{self.precision}' does not go with dtype {self.dtype}; with "
                              f"{self.dtype} storage the compute precision is {' or '.join(COMPUTE[self.dtype])}")
        for name in ("batch", "epochs") + (("seq_len",) if self.seq_len is not None else ()):
            _positive(name, getattr(self, name))
        for name in ("samples", "tokens"):
            value = getattr(self, name)
            if value is not None:
                _positive(f"--{name}", value)
                if value > MAX_COUNT:
                    raise SizingError(f"--{name}: {value} is past the limit of 10^18")
        if self.samples is not None and self.tokens is not None:
            raise SizingError("give --samples or --tokens, not both")
        for name in ("throughput", "latency_s"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), whole=False)
        if self.kind == "training" and (self.throughput or self.latency_s):
            raise SizingError("a throughput or latency target is for an inference workload")
        if self.kind == "inference" and (self.samples or self.tokens or self.epochs != 1):
            raise SizingError("samples, tokens and epochs are for a training workload")

    @property
    def compute_precision(self) -> str:
        """The precision matrix products run at (a sizing.hardware.devices.PRECISIONS name)."""
        return self.precision or COMPUTE[self.dtype][0]

    def estimate_args(self) -> dict:
        """Keyword arguments of ``sizing.estimate`` that build the graph this workload runs."""
        return {"batch": self.batch, "dtype": self.dtype, "optimizer": self.optimizer, "seq_len": self.seq_len}


def parse_count(name: str, text: str | None) -> int | None:
    """A count written as an integer or in scientific notation ('2e12', '1.28e6', '1_000') as an exact int, read
    as the decimal it is written as; SizingError for anything that is not a positive whole number."""
    if text is None:
        return None
    try:
        value = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        raise SizingError(f"{name}: '{text}' is not a number (write e.g. 2e12 or 1281167)") from None
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise SizingError(f"{name}: '{text}' is not a positive whole number")
    if value > MAX_COUNT:
        raise SizingError(f"{name}: {text} is past the limit of 10^18")
    return int(value)
