"""The run record's shape, in one place: typed classes and their JSON form.

The trainer builds a `RunRecord` once, when the run has ended (`chimera.train.run.run_record`);
every reader (doctor, report, gates, reproduce) gets one from `chimera.records.store.load_record`.
`record.schema.json` describes the same JSON and a test holds the two together
(tests/unit/test_record_types.py). Records written by an earlier `SCHEMA_VERSION` are upgraded on
load (chimera.records.upgrade), so a record from last year still reads.

`config` is the run's `chimera.config.RunConfig` itself and `env` a `RunEnv` (chimera.records.env), so a
reader writes `record.config.train.lr` and a misspelt or missing field is an error, not a silent default.
Why records import chimera.config, the one exception to "records import no other chimera module": the
resolved config is what a record is *of*, and config.py already owns its shape and validation in frozen
dataclasses that import nothing but chimera.errors (no torch, no trainer). A mirror of those classes here
would be a second owner of the same shape that drifts; moving them here would make the matrix and the
trainer depend on records for their own knobs. Loading runs `config_from_dict`, which refuses a missing or
unknown key in one line naming it (the schema checks the same first).

Every class here is a plain, frozen, keyword-only dataclass, `RunRecord` and the parts it nests alike: a
record is made whole (by the trainer, or from JSON) and a variant is `dataclasses.replace` of it. Frozen is
shallow: the lists and dicts inside stay lists and dicts, as in the JSON. An `Event` also checks that its
kind is one of the closed set. On disk a key that a class marks `absent_when_none` is left out rather
than written as null: a timing entry without clocks, a failed run's final train_acc; a curve point that
did not measure the clean training subset lacks its two keys.
Imports chimera.config and nothing else outside chimera/records/ (tests/unit/test_import_boundaries.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal, get_args

from chimera.config import RunConfig, config_from_dict
from chimera.records.env import RunEnv

SCHEMA_VERSION = 5
Status = Literal["completed", "stopped_early", "failed", "interrupted"]
STATUSES: tuple[str, ...] = get_args(Status)
# What the trainer notes in `events`: the closed set the schema allows and the doctor reads (non_finite).
EventKind = Literal["resumed", "interrupted", "early_stop", "non_finite"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
SPLITS = ("train", "val", "clean_train", "test")

_ABSENT = {"absent_when_none": True}  # field metadata: None means the key is left out of the JSON


def _optional(default: Any = None) -> Any:
    return field(default=default, metadata=_ABSENT)


def _plain(value: Any) -> Any:
    """JSON-ready data: record classes via their `to_json`, the config's dataclasses field by field (as
    chimera.config.config_to_dict writes them), non-finite floats as null (JSON has no NaN)."""
    if is_dataclass(value) and not isinstance(value, type):
        return value.to_json() if hasattr(value, "to_json") else _plain(asdict(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _to_json(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)
            if not (f.metadata.get("absent_when_none") and getattr(obj, f.name) is None)}


def _build(cls: type, raw: dict[str, Any], /, **convert: Callable[[Any], Any]) -> Any:
    """`cls` from its JSON object: known keys only (the schema has already refused unknown ones)."""
    return cls(**{f.name: convert.get(f.name, _same)(raw[f.name]) for f in fields(cls) if f.name in raw})


def _same(value: Any) -> Any:
    return value


def _list_of(cls: type) -> Callable[[Any], Any]:
    return lambda items: None if items is None else [cls.from_json(item) for item in items]


class _JsonObject:
    """`to_json` / `from_json` by field name; `_nested` names the converters of fields holding record classes.
    `from_json` reads the current SCHEMA_VERSION (chimera.records.upgrade brings older JSON up first)."""

    _nested: dict[str, Callable[[Any], Any]] = {}

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        return _build(cls, data, **cls._nested)


@dataclass(frozen=True, kw_only=True)
class Precision(_JsonObject):
    """The precision the run trained in and who chose it (config > accelerate launch > auto)."""

    value: Literal["fp32", "bf16", "fp16"]
    source: Literal["config", "accelerate", "auto"]
    requested: Literal["auto", "fp32", "bf16", "fp16"]
    accelerate_launch: str | None  # $ACCELERATE_MIXED_PRECISION as given, or None



@dataclass(frozen=True, kw_only=True)
class TokenStats(_JsonObject):
    """How much text one split loses to the tokenizer."""

    unk_rate: float  # share of text tokens that are [UNK]
    truncation_rate: float  # share of texts cut at data.max_length
    mean_tokens: float  # tokens per text, [CLS] included



@dataclass(frozen=True, kw_only=True)
class DataInfo(_JsonObject):
    """What the run trained and was measured on, fingerprinted so a rerun can refuse different data."""

    source: str  # the --data-dir folder, the local file or folder, or hub:<name>
    label_names: list[str]  # label i's name (label_counts' keys are the indices)
    sizes: dict[str, int]  # rows per split (SPLITS)
    label_counts: dict[str, dict[str, int]]  # split -> label index -> rows
    leakage: dict[str, int]  # rows the leakage guard removed, by reason
    fingerprints: dict[str, str]  # split -> sha256 of its rows
    tokenizer_sha256: str
    token_stats: dict[str, TokenStats]  # train, val, test

    _nested = {"token_stats": lambda stats: {split: TokenStats.from_json(v) for split, v in stats.items()}}


@dataclass(frozen=True, kw_only=True)
class ParamCounts(_JsonObject):
    """total, embedding, non_embedding, and active (what one token touches; below total for MoE)."""

    total: int = 0
    embedding: int = 0
    non_embedding: int = 0
    active: int = 0



@dataclass(frozen=True, kw_only=True)
class MoeLayerStats(_JsonObject):
    """Routing of one MoE layer over the validation set."""

    layer: int
    tokens_per_expert: list[float]  # share of routed slots per expert
    router_entropy: float
    dropped_fraction: float  # share of routed slots over capacity
    balance_loss: float
    z_loss: float



@dataclass(frozen=True, kw_only=True)
class SplitScore(_JsonObject):
    """Loss and accuracy of one evaluation pass; None where the value was not finite."""

    loss: float | None
    acc: float | None


@dataclass(frozen=True, kw_only=True)
class CurvePoint(_JsonObject):
    """One evaluation. `clean_train` is None at evaluations that did not measure the clean training
    subset (evaluation.clean_train_every); on disk its two keys are then absent, not null."""

    step: int
    train_loss: float | None  # optimisation loss as trained, mean since the last evaluation
    val_loss: float | None
    val_acc: float | None
    lr: float
    grad_norm: float | None  # of the last step before this evaluation
    clean_train: SplitScore | None = None  # eval mode, no smoothing, no augmentation
    moe: list[MoeLayerStats] | None = None  # MoE cells only

    @property
    def clean_train_loss(self) -> float | None:
        return self.clean_train.loss if self.clean_train else None

    @property
    def train_acc(self) -> float | None:
        return self.clean_train.acc if self.clean_train else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "train_loss": self.train_loss}
        if self.clean_train is not None:
            out.update(clean_train_loss=self.clean_train.loss, train_acc=self.clean_train.acc)
        out.update(val_loss=self.val_loss, val_acc=self.val_acc, lr=self.lr, grad_norm=self.grad_norm)
        if self.moe is not None:
            out["moe"] = self.moe
        return _plain(out)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CurvePoint:
        clean = SplitScore(loss=data["clean_train_loss"], acc=data["train_acc"]) if "clean_train_loss" in data else None
        moe = [MoeLayerStats.from_json(layer) for layer in data["moe"]] if data.get("moe") is not None else None
        return cls(step=data["step"], train_loss=data["train_loss"], val_loss=data["val_loss"],
                   val_acc=data["val_acc"], lr=data["lr"], grad_norm=data["grad_norm"], clean_train=clean, moe=moe)


@dataclass(frozen=True, kw_only=True)
class TimingPoint(_JsonObject):
    """Wall-clock at one evaluation; apart from the curves because it never reproduces bitwise."""

    step: int
    step_time_s: float | None  # mean optimiser-step time of the interval since the last evaluation
    samples_per_s: float | None
    train_s: float | None = _optional()  # optimiser-step seconds from the first step; absent in old records
    wall_s: float | None = _optional()  # seconds from the first step to the end of this evaluation
    joules: float | None = _optional()  # energy over the same span as wall_s (RunRecord.energy); absent: not counted



@dataclass(frozen=True, kw_only=True)
class Event(_JsonObject):
    """Something notable at a step: resumed, interrupted, early_stop, non_finite (loss or gradient)."""

    step: int
    kind: EventKind
    detail: str | None = _optional()

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {', '.join(EVENT_KINDS)}")



@dataclass(frozen=True, kw_only=True)
class FinalMetrics(_JsonObject):
    """The run's closing measurement (best weights restored when early stopping is on); None until measured."""

    clean_train_loss: float | None = None  # eval mode, no smoothing, no augmentation, fixed training subset
    val_loss: float | None = None
    val_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    best_step: int | None = None  # the step of the lowest val loss
    steps: int = 0
    stopped_early: bool = False
    wall_s: float = 0.0
    train_samples_per_s: float | None = None  # over optimiser-step time only
    train_acc: float | None = _optional()  # measured by a run that finished
    restored_best: bool | None = _optional()  # whether the best weights were restored before measuring
    compile_s: float | None = _optional()  # step modes compile and graph: the first step, which compiles it



@dataclass(frozen=True, kw_only=True)
class TargetTime(_JsonObject):
    """Time to one target quality, as MLPerf Training counts it (chimera.records.time_to_target)."""

    metric: Literal["val_acc", "val_loss"]
    target: float
    reached: bool
    step: int | None  # the first evaluation that reached it; None (and the rest None) when none did
    samples: int | None
    train_s: float | None
    wall_s: float | None
    value: float | None



@dataclass(frozen=True, kw_only=True)
class TargetEnergy(_JsonObject):
    """Joules to one target quality, over the span of its TargetTime's wall_s."""

    metric: Literal["val_acc", "val_loss"]
    target: float
    joules: float | None  # None when not reached, or reached before a resume that could not go on counting


@dataclass(frozen=True, kw_only=True)
class Energy(_JsonObject):
    """What a run used by a hardware counter (chimera.train.energy): all but `unavailable`, or only that."""

    source: Literal["rapl", "nvml"] | None = _optional()
    scope: str | None = _optional()  # what the joules include: which package or GPU, other processes too
    joules: float | None = _optional()  # over final_metrics.wall_s
    to_target: list[TargetEnergy] | None = _optional()  # one per time_to_target entry, in its order
    unavailable: str | None = _optional()  # why nothing was measured

    _nested = {"to_target": _list_of(TargetEnergy)}


@dataclass(frozen=True, kw_only=True)
class ResumeInfo(_JsonObject):
    """Where a run came from (resumed_from_step) or how to continue it (resumable_from_step, command)."""

    resumed_from_step: int | None = _optional()
    resumable_from_step: int | None = _optional()
    command: str | None = _optional()  # the flag that continues an interrupted run



@dataclass(frozen=True, kw_only=True)
class RunRecord(_JsonObject):
    """One training run of one matrix cell, made once when the run has ended."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    cell: str
    profile: str
    seed: int
    status: Status = "failed"  # a record that does not say how its run ended says it failed
    created_at: str | None = _optional()
    world_size: int = 1
    config: RunConfig  # resolved: the matrix, the profile and every --set, with the precision that ran
    env: RunEnv  # library versions, device, threads, hardware fingerprint, git commit
    precision: Precision
    data: DataInfo
    params: ParamCounts = field(default_factory=ParamCounts)
    curves: list[CurvePoint] = field(default_factory=list)
    timing: list[TimingPoint] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    final_metrics: FinalMetrics = field(default_factory=FinalMetrics)
    time_to_target: list[TargetTime] | None = _optional()
    error: str | None = None
    resume: ResumeInfo | None = None
    energy: Energy | None = _optional()  # absent in records made before it was measured

    def curve(self, metric: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one curve metric, skipping evaluations that lack it."""
        return [(p.step, value) for p in self.curves if (value := getattr(p, metric)) is not None]

    def target_time(self, metric: str, target: float) -> TargetTime | None:
        """The entry for (metric, target), or None when the run did not time that target."""
        return next((t for t in self.time_to_target or [] if t.metric == metric and abs(t.target - target) < 1e-12),
                    None)

    def config_json(self) -> dict[str, Any]:
        """The config as the record writes it (chimera.config.config_to_dict's form): for hashing and diffing."""
        return _plain(self.config)

    _nested = {"config": config_from_dict, "env": RunEnv.from_json, "precision": Precision.from_json,
               "data": DataInfo.from_json, "params": ParamCounts.from_json,
               "curves": _list_of(CurvePoint), "timing": _list_of(TimingPoint), "events": _list_of(Event),
               "final_metrics": FinalMetrics.from_json, "time_to_target": _list_of(TargetTime),
               "resume": lambda v: None if v is None else ResumeInfo.from_json(v), "energy": Energy.from_json}
