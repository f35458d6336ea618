"""Every knob of a run as frozen, keyword-only dataclasses, validated where each field is defined.

A `RunConfig` is fully resolved: the matrix file plus profile plus `--set` overrides. It is written
into the run record verbatim, so a record alone is enough to rerun it (`chimera reproduce`).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

from chimera.errors import ChimeraError

SCHEDULES = ("constant", "linear", "cosine")
ARCHITECTURES = ("transformer", "bag_of_ngrams")
FFN_KINDS = ("dense", "moe")
EXPERT_KINDS = ("gelu", "swiglu")
DeviceType = typing.Literal["cpu", "cuda", "mps"]  # what a run trains on (chimera.train.device.probe_device)
DEVICE_TYPES: tuple[str, ...] = typing.get_args(DeviceType)
DEVICES = ("auto", *DEVICE_TYPES)  # what --device and RunConfig.device accept: "auto" picks cuda, then mps, then cpu
STEP_MODES = ("auto", "eager", "compile", "graph")  # which runs where: chimera.train.device.choose_step_mode
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # which are legal where: chimera.train.device.precision_problem
ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # ours -> Accelerator(mixed_precision=)
FROM_ACCELERATE = {value: ours for ours, value in ACCELERATE_PRECISION.items()}  # "no" -> "fp32", ...
# The pool every published record was cut from (the offline subset of the train split), listed in
# chimera/data/manifests/; records from before data.train_pool existed used it too.
DEFAULT_TRAIN_POOL = "manifest:ag_news-train-subset"
AG_NEWS = "ag_news"  # data.dataset's default: the dataset every published record trained on
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")  # its ClassLabel names, labels 0-3
# The data section's dataset keys at their defaults: a record from before the keys existed read AG News this way.
DATASET_DEFAULTS = {"dataset": AG_NEWS, "text_column": "text", "label_column": "label", "train_split": "train",
                    "test_split": "test"}
_TRAIN_POOL = re.compile(r"all|manifest:[a-z0-9][a-z0-9_.-]*(@sha256:[0-9a-f]{64})?")


def precision_from_accelerate(mixed_precision: str | None) -> str:
    """Our name for accelerate's mixed_precision value; absent (files from before precision was an axis) is fp32."""
    mixed = mixed_precision or "no"
    return FROM_ACCELERATE.get(mixed, mixed)


def same_rows(data: DataConfig, other: DataConfig) -> bool:
    """Whether two data sections cut the same rows: equal, reading a pinned train_pool by its manifest's name
    (a record from before the key was upgraded to DEFAULT_TRAIN_POOL)."""
    def rows(section: DataConfig) -> DataConfig:
        return dataclasses.replace(section, train_pool=section.train_pool.partition("@")[0])
    return rows(data) == rows(other)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ChimeraError(f"config: {key} {message}")


def _check_prob(value: float, key: str, *, upper_inclusive: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    _check(ok, key, f"must be in [0, 1{']' if upper_inclusive else ')'}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which rows a run sees and how text becomes token ids."""

    train_samples: int = 2048  # stratified subset of the train split used for training
    val_samples: int = 1024  # stratified, disjoint from the training subset, from the train split
    test_samples: int = 0  # stratified subset of the official test split; 0 = the whole split
    max_length: int = 64  # tokens per example after truncation ([CLS] included)
    vocab_size: int = 8192  # WordPiece vocabulary, trained on the training subset only
    lowercase: bool = True
    # The train-split rows the subsets are drawn from: "manifest:NAME" = the rows that manifest lists, in its
    # order, found by content hash in any source that holds them (the hub, the offline subset); "all" = every
    # row of the source. A run's record pins the manifest's sha256: "manifest:NAME@sha256:HEX".
    train_pool: str = DEFAULT_TRAIN_POOL
    # Which data: "ag_news" (the hub's fancyzhx/ag_news, or an offline copy given as --data-dir), a hub id, or
    # a local CSV / JSON Lines / Parquet file or folder (chimera/data/dataset.py); its columns and split names.
    dataset: str = AG_NEWS
    text_column: str = "text"
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "test"  # a single local file has none: its test rows are carved out like val's

    def __post_init__(self) -> None:
        for key in ("dataset", "text_column", "label_column", "train_split", "test_split"):
            value = getattr(self, key)
            _check(isinstance(value, str) and value.strip() == value != "", f"data.{key}",
                   f"must be a non-empty name without surrounding spaces, got {value!r}")
        _check(self.text_column != self.label_column, "data.label_column",
               f"must differ from data.text_column (both {self.text_column!r})")
        _check(self.train_split != self.test_split, "data.test_split",
               f"must differ from data.train_split (both {self.train_split!r})")
        _check(_TRAIN_POOL.fullmatch(self.train_pool) is not None, "data.train_pool",
               f"must be 'all' or 'manifest:NAME' (optionally '@sha256:HEX'), got {self.train_pool!r}")
        _check(self.train_samples >= 8, "data.train_samples", f"must be >= 8, got {self.train_samples}")
        _check(self.val_samples >= 8, "data.val_samples", f"must be >= 8, got {self.val_samples}")
        _check(self.test_samples >= 0, "data.test_samples", f"must be >= 0, got {self.test_samples}")
        _check(4 <= self.max_length <= 4096, "data.max_length", f"must be in [4, 4096], got {self.max_length}")
        _check(128 <= self.vocab_size <= 1_000_000, "data.vocab_size",
               f"must be in [128, 1000000], got {self.vocab_size}")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Training-only text augmentation; validation, test and clean-train text is never augmented."""

    enabled: bool = False
    synonym_prob: float = 0.1  # per-word chance of a WordNet synonym replacement
    word_dropout: float = 0.1  # per-word chance of deletion
    word_shuffle: float = 0.15  # per-word chance of swapping with a neighbour

    def __post_init__(self) -> None:
        for name in ("synonym_prob", "word_dropout", "word_shuffle"):
            _check_prob(getattr(self, name), f"augment.{name}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Encoder-only classifier; `ffn` picks the dense FFN or the routed mixture of experts.

    `arch = "bag_of_ngrams"` is the linear reference instead (chimera/model/bow.py): it uses
    `d_model` (embedding width), `dropout` and `ngram_buckets`; the transformer fields are ignored.
    """

    arch: str = "transformer"
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024  # hidden width of the FFN (of each expert, for MoE)
    dropout: float = 0.1
    ffn: str = "dense"
    num_experts: int = 4
    top_k: int = 2
    moe_every: int = 1  # every k-th block (counting from the last) gets the MoE FFN; 1 = all blocks
    expert_kind: str = "gelu"  # "gelu" (same as the dense FFN) or "swiglu" (Mixtral-style)
    capacity_factor_train: float | None = None  # None = dropless
    capacity_factor_eval: float | None = None
    aux_loss_coef: float = 0.01  # Switch Transformer load-balancing loss weight
    z_loss_coef: float = 0.001  # router z-loss weight (ST-MoE)
    ngram_buckets: int = 65536  # bag_of_ngrams only: hash buckets for word bigrams

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "num_experts", "top_k", "moe_every"):
            _check(getattr(self, name) >= 1, f"model.{name}", f"must be >= 1, got {getattr(self, name)}")
        _check(self.d_model % self.n_heads == 0, "model.d_model",
               f"({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        _check_prob(self.dropout, "model.dropout")
        _check(self.arch in ARCHITECTURES, "model.arch", f"must be one of {ARCHITECTURES}, got {self.arch!r}")
        _check(self.ngram_buckets >= 1, "model.ngram_buckets", f"must be >= 1, got {self.ngram_buckets}")
        _check(self.ffn in FFN_KINDS, "model.ffn", f"must be one of {FFN_KINDS}, got {self.ffn!r}")
        _check(self.expert_kind in EXPERT_KINDS, "model.expert_kind",
               f"must be one of {EXPERT_KINDS}, got {self.expert_kind!r}")
        _check(self.top_k <= self.num_experts, "model.top_k",
               f"({self.top_k}) must be <= model.num_experts ({self.num_experts})")
        for name in ("capacity_factor_train", "capacity_factor_eval"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"model.{name}", f"must be None (dropless) or > 0, got {value!r}")
        for name in ("aux_loss_coef", "z_loss_coef"):
            _check(getattr(self, name) >= 0, f"model.{name}", f"must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation, evaluation cadence and stopping."""

    batch_size: int = 32
    lr: float = 3e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # applied to matrices only (see model.weight_decay_groups)
    betas: tuple[float, float] = (0.9, 0.999)
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    schedule: str = "constant"  # lr after warmup: constant, linear or cosine decay to 0 at max_steps
    warmup_steps: int = 0
    max_steps: int = 5000
    eval_every: int = 100  # steps between evaluations on the full validation set
    early_stopping: bool = False
    patience: int = 5  # evaluations without a val-loss improvement of at least min_delta
    min_delta: float = 0.001
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = only on SIGINT/SIGTERM
    # auto: accelerate's launch setting if any, else fp32 on CPU and MPS, bf16 (else fp16) on CUDA. A run
    # record's config holds the precision that ran, so the record alone reruns it.
    precision: str = "auto"
    # How a step runs: eager (op by op), compile (torch.compile of the whole step: forward, loss, gradients,
    # clipping, AdamW, one graph, no host sync), graph (the same step replayed as CUDA graphs); auto: graph
    # on CUDA, eager on CPU and MPS. A record's config holds the mode that ran.
    step_mode: str = "auto"

    def __post_init__(self) -> None:
        _check(self.step_mode in STEP_MODES, "train.step_mode", f"must be one of {STEP_MODES}, got {self.step_mode!r}")
        _check(self.precision in PRECISIONS, "train.precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        _check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas",
               f"must be two numbers in [0, 1), got {self.betas!r}")
        _check_prob(self.label_smoothing, "train.label_smoothing")
        _check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.schedule in SCHEDULES, "train.schedule", f"must be one of {SCHEDULES}, got {self.schedule!r}")
        _check(self.max_steps >= 1, "train.max_steps", f"must be >= 1, got {self.max_steps}")
        _check(0 <= self.warmup_steps < self.max_steps, "train.warmup_steps",
               f"must be in [0, train.max_steps), got {self.warmup_steps}")
        _check(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        _check(self.patience >= 1, "train.patience", f"must be >= 1, got {self.patience}")
        _check(self.min_delta >= 0, "train.min_delta", f"must be >= 0, got {self.min_delta}")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """What each evaluation measures beyond the validation set, and which qualities the record times.

    None of it changes the trained weights (evaluation runs in eval mode and draws no random numbers),
    which is why the loss gate's config fingerprint leaves this section out.
    """

    target_val_acc: tuple[float, ...] = ()  # time to target: first evaluation with val accuracy >= each
    target_val_loss: tuple[float, ...] = ()  # ... and with clean val loss <= each
    clean_train_every: int = 1  # measure the clean-train subset at every k-th evaluation (and the last)

    def __post_init__(self) -> None:
        for value in self.target_val_acc:
            _check(0.0 < value <= 1.0, "evaluation.target_val_acc", f"values must be in (0, 1], got {value!r}")
        for value in self.target_val_loss:
            _check(math.isfinite(value) and value > 0.0, "evaluation.target_val_loss",
                   f"values must be finite and > 0, got {value!r}")
        for name in ("target_val_acc", "target_val_loss"):
            values = getattr(self, name)
            _check(len(set(values)) == len(values), f"evaluation.{name}", f"has a repeated value: {values!r}")
        _check(self.clean_train_every >= 1, "evaluation.clean_train_every",
               f"must be >= 1, got {self.clean_train_every}")

    def targets(self) -> list[tuple[str, float]]:
        """(metric, target) pairs, each metric's targets from the easiest to the hardest."""
        return ([("val_acc", v) for v in sorted(self.target_val_acc)]
                + [("val_loss", v) for v in sorted(self.target_val_loss, reverse=True)])


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One matrix cell under one profile: everything needed to rerun it."""

    cell: str
    profile: str
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        _check(self.device in DEVICES, "device", f"must be one of {DEVICES}, got {self.device!r}")
        _check(0 <= self.seed < 2**32, "seed", f"must be in [0, 2**32), got {self.seed}")


SECTIONS: dict[str, type] = {"data": DataConfig, "augment": AugmentConfig, "model": ModelConfig, "train": TrainConfig,
                             "evaluation": EvaluationConfig}


def _type_ok(value: Any, annotation: Any) -> bool:
    """True when `value` fits a (resolved) annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arm) for arm in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is tuple:
        arms = typing.get_args(annotation)
        if len(arms) == 2 and arms[1] is Ellipsis:  # tuple[float, ...]: any length, every item of one type
            return isinstance(value, (tuple, list)) and all(_type_ok(v, arms[0]) for v in value)
        return (isinstance(value, (tuple, list)) and len(value) == len(arms)
                and all(_type_ok(v, a) for v, a in zip(value, arms, strict=True)))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _coerce(value: Any, annotation: Any) -> Any:
    if isinstance(value, (list, tuple)):
        arms = typing.get_args(annotation)
        if len(arms) == 2 and arms[1] is Ellipsis and arms[0] is float:
            return tuple(float(v) for v in value)
        return tuple(value)
    if annotation in (float, float | None) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def build_section(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """Build a config dataclass from plain data, naming the offending key on any mismatch."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ChimeraError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        if not _type_ok(value, hints[key]):
            raise ChimeraError(f"{where}: {key} must be {_describe(hints[key])}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # 1e309 parses as inf
            raise ChimeraError(f"{where}: {key} must be a finite number, got {value!r}")
        clean[key] = _coerce(value, hints[key])
    try:
        return cls(**clean)
    except ChimeraError as exc:  # a range check of __post_init__ knows the key; `where` adds the file or flag
        raise ChimeraError(f"{where}: {str(exc).removeprefix('config: ')}") from None


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """Parse `section.key=value` as users type it; never evaluates code.

    The field's type decides: a value for a string field is the text itself (`train.schedule=cosine`,
    `data.train_pool=manifest:NAME@sha256:HEX`), quoted or not; any other value is a Python literal (number,
    bool, None, tuple, list), a bare word standing for itself so that the type check names the field."""
    path, sep, raw = text.partition("=")
    section, dot, key = path.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ChimeraError(f"--set {text!r}: expected section.key=value, e.g. train.lr=1e-4")
    raw = raw.strip()
    annotation = _field_type(section, key)
    takes_text = annotation is not None and _type_ok(raw, annotation)  # a string field
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        if not takes_text and not raw.replace("_", "").replace("-", "").isalnum():
            raise ChimeraError(f"--set {text!r}: value {raw!r} is not a literal (number, bool, None, string)") from None
        return section, key, raw  # the text itself, or a bare word (`train.lr=fast`) the type check then refuses
    if takes_text and not _type_ok(value, annotation):
        return section, key, raw  # a word that reads as another literal (`None`, `16`) is still the text
    return section, key, value


def _field_type(section: str, key: str) -> Any:
    """The resolved annotation of `section.key`, or None for an unknown one (apply_overrides names it)."""
    cls = SECTIONS.get(section)
    return typing.get_type_hints(cls).get(key) if cls is not None else None


def apply_overrides(config: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply `--set section.key=value` overrides; each is type-checked against its field.

    All overrides of a section are applied together before validation, so `train.max_steps=4
    train.warmup_steps=1` works in either order.
    """
    pending: dict[str, dict[str, Any]] = {}
    for text in assignments:
        section, key, value = parse_assignment(text)
        if section not in SECTIONS:
            raise ChimeraError(f"--set {text!r}: unknown section {section!r} (known: {', '.join(SECTIONS)})")
        pending.setdefault(section, dataclasses.asdict(getattr(config, section)))[key] = value
    updated = {section: build_section(SECTIONS[section], values, where=f"--set {section}")
               for section, values in pending.items()}
    return replace(config, **updated)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain JSON-ready data (tuples become lists)."""
    return dataclasses.asdict(config)


TOP_LEVEL = ("cell", "profile", "seed", "device")  # a RunConfig's keys besides its SECTIONS


def config_from_dict(data: dict[str, Any], *, where: str = "record.config") -> RunConfig:
    """Inverse of `config_to_dict`, with the same validation as the matrix file. Every key must be there: a
    record's config is complete (the trainer writes it whole), so a missing key is an error naming it, never
    a default that may differ from what ran (chimera.records.upgrade completes records written before a key
    existed, with `with_defaults`)."""
    unknown = set(data) - set(TOP_LEVEL) - set(SECTIONS)
    if unknown:
        raise ChimeraError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key in (*TOP_LEVEL, *SECTIONS):
        if key not in data:
            raise ChimeraError(f"{where}: missing key {key!r}")
    for name, cls in SECTIONS.items():
        if not isinstance(data[name], dict):
            raise ChimeraError(f"{where}.{name}: must be a table of keys, got {data[name]!r}")
        missing = next((f.name for f in fields(cls) if f.name not in data[name]), None)
        if missing is not None:
            raise ChimeraError(f"{where}: missing key '{name}.{missing}'")
    sections = {name: build_section(cls, data[name], where=f"{where}.{name}") for name, cls in SECTIONS.items()}
    return RunConfig(**{key: data[key] for key in TOP_LEVEL}, **sections)


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A config as plain data with every missing section key at its default and the rest as it was: what a
    config written before the key existed ran with (a key is added with the old behaviour as its default)."""
    return {**data, **{name: {**dataclasses.asdict(cls()), **data.get(name, {})} for name, cls in SECTIONS.items()}}
