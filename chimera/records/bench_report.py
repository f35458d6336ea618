"""A pytest-benchmark JSON of this suite as typed data: the one reader of its shape.

What bench/ writes (bench/conftest.py, bench/machine.py, bench/memory.py): `machine_info` with our
`machine_info.chimera` block (device, profile, threads, torch: the same every session on a machine),
a top-level `chimera` block (load averages, calibration GEMMs: what one session measured; older files
kept it inside `machine_info.chimera`), pytest-benchmark's `commit_info`, and a `benchmarks` list whose
entries carry `stats` and our `extra_info` (cell, precision, derived figures, peak memory). The speed
gate, the report, the history and bench/summarise.py read it only through `load_bench_report`, so a
change of the file's shape is made here once. Every key is kept (`to_json` gives the file back); the
typed fields are views of the keys the readers use, checked once when the file is read, so a corrupt
file is one ChimeraError naming it and the key, never a KeyError deep in a report.

Standard library and chimera.errors/fileio only: the speed gate, which imports this, runs anywhere the
JSON files are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chimera.errors import ChimeraError
from chimera.fileio import read_json

EMPTY: Mapping[str, Any] = MappingProxyType({})
FIX = "write it again with pytest --benchmark-json=FILE"


class NotABenchReport(ChimeraError):
    """A JSON object without `benchmarks`: another kind of file (a run record, an environment dump), which
    folder walkers skip, while a file whose `benchmarks` are malformed is corrupt."""


class BenchFieldError(ValueError):
    """A key of the file holds a value of the wrong kind; `from_json` turns it into a ChimeraError naming it."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(f"{key} is {value!r:.60}, expected {expected}")
        self.key, self.value, self.expected = key, value, expected

    def under(self, prefix: str) -> BenchFieldError:
        return BenchFieldError(f"{prefix}.{self.key}" if self.key else prefix, self.value, self.expected)


def _get(source: Mapping[str, Any], key: str, kinds: tuple[type, ...], expected: str) -> Any:
    """source[key] when it is one of `kinds` (a bool counts as no number), None when absent or null."""
    value = source.get(key)
    if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
        raise BenchFieldError(key, value, expected)
    return value


def _mapping(source: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = _get(source, key, (Mapping,), "an object")
    return EMPTY if value is None else MappingProxyType(dict(value))


def _text(source: Mapping[str, Any], key: str) -> str | None:
    return _get(source, key, (str,), "a string")


def _number(source: Mapping[str, Any], key: str) -> float | None:
    value = _get(source, key, (int, float), "a number")
    return None if value is None else float(value)


def _count(source: Mapping[str, Any], key: str) -> int | None:
    return _get(source, key, (int,), "a whole number")


def _numbers(source: Mapping[str, Any], key: str) -> tuple[float, ...] | None:
    value = _get(source, key, (list,), "a list of numbers")
    if value is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise BenchFieldError(key, value, "a list of numbers")
    return None if value is None else tuple(value)  # as written (an int stays one): a summary prints the file's


def _set(obj: Any, **views: Any) -> None:
    for name, value in views.items():
        object.__setattr__(obj, name, value)  # frozen: the views are filled once, in __post_init__


def _view() -> Any:
    """A typed view of `source`: filled in __post_init__, not compared (equal sources give equal views)."""
    return field(init=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class BenchMemory:
    """Peak memory of one benchmark alone (bench/memory.py), MiB; None where it was not measured there."""

    cpu_rss_peak_mib: float | None = None  # kernel high-water mark reset at the benchmark's start
    cpu_rss_growth_mib: float | None = None  # over the RSS at its start
    cuda_max_allocated_mib: float | None = None
    cuda_max_reserved_mib: float | None = None
    mps_driver_peak_mib: float | None = None
    peak_memory_mib: float | None = None  # the headline figure; in files before per-benchmark memory the only
    # one, and then the process's high-water mark so far rather than this benchmark's own

    @classmethod
    def from_extra_info(cls, extra: Mapping[str, Any]) -> BenchMemory:
        return cls(**{f.name: _number(extra, f.name) for f in fields(cls)})

    @property
    def measured_alone(self) -> bool:
        """Whether this benchmark measured its own peak (files before bench/memory.py did not)."""
        return self.cpu_rss_peak_mib is not None


@dataclass(frozen=True)
class BenchEntry:
    """One entry of `benchmarks` as written, with typed views of the keys the readers use."""

    source: Mapping[str, Any] = field(repr=False)  # the entry exactly as pytest-benchmark wrote it
    name: str = _view()
    group: str | None = _view()  # "train-step", "calibration", "peer", ...; None when ungrouped
    stats: Mapping[str, Any] = _view()  # pytest-benchmark's (median, iqr, rounds, ...), seconds
    extra_info: Mapping[str, Any] = _view()  # what the benchmark added; the fields below are read from it
    median_s: float | None = _view()  # stats.median; absent when timing was disabled
    iqr_s: float | None = _view()
    cell: str | None = _view()  # the matrix cell it ran (train steps, the peer, the data pipeline)
    precision: str | None = _view()  # as recorded; `resolved_precision` also reads files from before it was
    mixed_precision: str | None = _view()  # accelerate's setting: "no", "bf16", "fp16"
    profile: str | None = _view()  # extra_info.bench_profile: the shapes it ran at
    dtype: str | None = _view()  # the calibration GEMM's dtype
    injected_matmuls: int = _view()  # the gate proof's deliberate slowdown (bench/prove_gate.sh); 0 when none
    samples_per_s: float | None = _view()
    mfu: float | None = _view()
    gflop_per_s: float | None = _view()
    speedup_vs_peer: float | None = _view()  # the BERT peer's step time / ours
    memory: BenchMemory = _view()

    def __post_init__(self) -> None:
        if not isinstance(self.source, Mapping):
            raise BenchFieldError("", self.source, "an object")
        name = self.source.get("name")
        if not isinstance(name, str):
            raise BenchFieldError("name", name, "a string")
        _set(self, source=MappingProxyType(dict(self.source)), name=name, group=_text(self.source, "group"),
             stats=_mapping(self.source, "stats"), extra_info=_mapping(self.source, "extra_info"))
        try:
            _set(self, median_s=_number(self.stats, "median"), iqr_s=_number(self.stats, "iqr"))
        except BenchFieldError as exc:
            raise exc.under("stats") from None
        extra = self.extra_info
        try:
            _set(self, cell=_text(extra, "cell"), precision=_text(extra, "precision"),
                 mixed_precision=_text(extra, "mixed_precision"), profile=_text(extra, "bench_profile"),
                 dtype=_text(extra, "dtype"), injected_matmuls=_count(extra, "injected_matmuls") or 0,
                 samples_per_s=_number(extra, "samples_per_s"), mfu=_number(extra, "mfu"),
                 gflop_per_s=_number(extra, "gflop_per_s"), speedup_vs_peer=_number(extra, "speedup_vs_peer"),
                 memory=BenchMemory.from_extra_info(extra))
        except BenchFieldError as exc:
            raise exc.under("extra_info") from None

    @property
    def resolved_precision(self) -> str:
        """extra_info.precision, else (files written before precision was an axis) accelerate's mixed
        precision, where "no" (and its absence) is fp32."""
        return self.precision or ("fp32" if (self.mixed_precision or "no") == "no" else self.mixed_precision)

    def number(self, key: str) -> float | None:
        """An extra_info figure without a typed field (a goal ratio), or None when absent or not a number."""
        value = self.extra_info.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class BenchMachine:
    """`machine_info.chimera` (bench/machine.py `machine_block`): the machine and setup, the same every session."""

    profile: str | None  # bench_profile: the shapes every benchmark ran at
    device: str | None  # cpu | cuda | mps
    device_name: str | None  # the CPU or GPU model
    cpu_name: str | None
    cpu_count: int | None  # the CPUs this process may use
    os_cpu_count: int | None  # the CPUs the machine has
    torch: str | None  # torch's version
    torch_num_threads: int | None

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> BenchMachine:
        return cls(profile=_text(block, "bench_profile"), device=_text(block, "device"),
                   device_name=_text(block, "device_name"), cpu_name=_text(block, "cpu_name"),
                   cpu_count=_count(block, "cpu_count"), os_cpu_count=_count(block, "os_cpu_count"),
                   torch=_text(block, "torch"), torch_num_threads=_count(block, "torch_num_threads"))


@dataclass(frozen=True)
class BenchSession:
    """What one session measured about the machine's state (bench/machine.py `session_block`)."""

    load_average_at_start: tuple[float, ...] | None  # os.getloadavg(): 1, 5, 15 minutes
    load_average_at_end: tuple[float, ...] | None
    calibration_gemm: Mapping[str, Any]  # the fp32 GEMM's size, median_s, flop_per_s; empty when absent
    calibration_gemms: Mapping[str, Any]  # precision -> that precision's GEMM (each MFU's denominator)

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> BenchSession:
        return cls(load_average_at_start=_numbers(block, "load_average_at_start"),
                   load_average_at_end=_numbers(block, "load_average_at_end"),
                   calibration_gemm=_mapping(block, "calibration_gemm"),
                   calibration_gemms=_mapping(block, "calibration_gemms"))


@dataclass(frozen=True)
class BenchCommit:
    """pytest-benchmark's `commit_info`: the checkout the numbers came from."""

    id: str | None  # the git commit
    time: str | None  # ISO time of the commit
    dirty: bool | None  # uncommitted changes

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> BenchCommit:
        return cls(id=_text(block, "id"), time=_text(block, "time"), dirty=_get(block, "dirty", (bool,), "a boolean"))


@dataclass(frozen=True)
class BenchReport:
    """One pytest-benchmark JSON as written (`source`), with typed views; build it with `load_bench_report`
    or `from_json`, which turn every malformed key into one ChimeraError naming the file and the key."""

    source: Mapping[str, Any] = field(repr=False)  # the whole file as read; to_json gives it back
    path: Path = Path("<benchmark JSON>")  # where it was read from, for messages
    benchmarks: tuple[BenchEntry, ...] = _view()
    machine_info: Mapping[str, Any] = _view()  # pytest-benchmark's (node, cpu, python...) and ours in .chimera
    machine: BenchMachine = _view()  # typed machine_info.chimera
    session: BenchSession = _view()  # the top-level chimera block; older files: machine_info.chimera
    commit: BenchCommit = _view()
    datetime: str | None = _view()  # when pytest-benchmark wrote the file

    def __post_init__(self) -> None:
        source = self.source
        if not isinstance(source, Mapping) or not isinstance(source.get("benchmarks"), list):
            raise BenchFieldError("benchmarks", source.get("benchmarks") if isinstance(source, Mapping) else source,
                                  "a list")
        entries = []
        for i, raw in enumerate(source["benchmarks"]):
            try:
                entries.append(BenchEntry(raw))
            except BenchFieldError as exc:
                raise exc.under(f"benchmarks[{i}]") from None
        machine_info = _mapping(source, "machine_info")
        try:
            ours = _mapping(machine_info, "chimera")
            machine = BenchMachine.from_json(ours)
        except BenchFieldError as exc:
            raise exc.under("machine_info") from None
        session_block = source.get("chimera")
        try:  # the session block moved out of machine_info (bench/machine.py); older files kept it there
            session = (BenchSession.from_json(session_block) if isinstance(session_block, Mapping) else
                       BenchSession.from_json(ours))
        except BenchFieldError as exc:
            raise exc.under("chimera" if isinstance(session_block, Mapping) else "machine_info.chimera") from None
        try:
            commit = BenchCommit.from_json(_mapping(source, "commit_info"))
        except BenchFieldError as exc:
            raise exc.under("commit_info") from None
        _set(self, source=MappingProxyType(dict(source)), path=Path(self.path), benchmarks=tuple(entries),
             machine_info=machine_info, machine=machine, session=session, commit=commit,
             datetime=_text(source, "datetime"))

    @classmethod
    def from_json(cls, data: Any, path: Path | str = "<benchmark JSON>") -> BenchReport:
        """The typed report of parsed JSON; NotABenchReport for an object without `benchmarks`, ChimeraError
        for anything else malformed, each one line naming `path` and the key."""
        path = Path(path)
        if not isinstance(data, Mapping):
            raise ChimeraError(f"{path}: not a pytest-benchmark file (a JSON {type(data).__name__}, not an object); "
                               f"{FIX}")
        if "benchmarks" not in data:
            raise NotABenchReport(f"{path}: not a pytest-benchmark file (no 'benchmarks' list); {FIX}")
        try:
            return cls(data, path)
        except BenchFieldError as exc:
            raise ChimeraError(f"{path}: not a pytest-benchmark file as bench/ writes it ({exc}); {FIX}") from None

    def to_json(self) -> dict[str, Any]:
        """The file's content as read (every key, including those without a typed view)."""
        return _plain(self.source)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def looks_like_bench_report(data: Any) -> bool:
    """Whether parsed JSON claims to be pytest-benchmark output (has `benchmarks`), before it is checked."""
    return isinstance(data, Mapping) and "benchmarks" in data


def load_bench_report(path: Path | str) -> BenchReport:
    """Read a pytest-benchmark JSON; one ChimeraError line naming the file (and key) when it is unusable,
    NotABenchReport when it is a JSON object of another kind."""
    path = Path(path)
    return BenchReport.from_json(read_json(path, "benchmark file", fix=FIX), path)


def find_bench_reports(folder: Path | str, unreadable: list[Path] | None = None) -> Iterator[BenchReport]:
    """Every pytest-benchmark JSON under `folder`, in path order. Other JSON there (run records, an environment
    dump: objects without `benchmarks`) is skipped; files unreadable or malformed go to `unreadable`."""
    for path in sorted(Path(folder).rglob("*.json")) if Path(folder).is_dir() else []:
        try:
            report = load_bench_report(path)
        except NotABenchReport:
            continue
        except ChimeraError:
            if unreadable is not None:
                unreadable.append(path)
            continue
        yield report
