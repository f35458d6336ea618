"""The experiment matrix as data: `matrix.toml` resolved into a `RunConfig` per (cell, profile).

The code never branches on a cell's name: cells and profiles are only section overrides, applied in
order defaults -> cell -> matching profile overrides -> `--set`. An `[ablations.BASE]` table names the cell
a base is held against; its variants (chimera/ablation.py) resolve like any cell, `--set` still last.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chimera.config import SECTIONS, RunConfig, apply_overrides, build_section
from chimera.errors import ChimeraError

DEFAULT_MATRIX = Path(__file__).with_name("matrix.toml")
_CELL_KEYS = {"description", *SECTIONS}
_OVERRIDE_KEYS = {"cells", *SECTIONS}
_ABLATION_KEYS = {"against", "description"}


@dataclass(frozen=True)
class Matrix:
    """Parsed matrix file; `resolve` turns a (cell, profile) into a validated `RunConfig`."""

    path: Path
    cells: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    ablations: dict[str, dict[str, Any]] = field(default_factory=dict)  # base cell -> {against, description}

    def resolve(self, cell: str, profile: str, *, seed: int = 0, device: str = "auto",
                overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """A cell of the file, or an ablation variant of one (`fixed/dense-without-dropout`)."""
        if cell in self.cells:
            return apply_overrides(self._resolve_cell(cell, profile, seed=seed, device=device), list(overrides))
        from chimera.ablation import ADD_IN, parse_variant_name  # only a name outside the file needs it

        variant = parse_variant_name(cell)
        for base, spec in self.ablations.items():
            if variant and variant.start == (spec["against"] if variant.direction == ADD_IN else base):
                family = self.ablation(base, profile, seed=seed, device=device, overrides=overrides)
                for config in family:
                    if config.cell == cell:
                        return config
                raise ChimeraError(f"{cell!r}: {base} and {spec['against']} do not differ in {variant.change} under "
                                   f"profile {profile}, so there is no such variant")
        raise ChimeraError(f"unknown cell {cell!r} (known: {', '.join(self.cells)}; and the variants of the "
                           f"ablations of {', '.join(self.ablations) or 'no cell'})")

    def ablation(self, base: str, profile: str, *, seed: int = 0, device: str = "auto",
                 overrides: list[str] | tuple[str, ...] = ()) -> list[RunConfig]:
        """The ablation family of `base`: [base, the cell it is held against, leave-one-out..., add-one-in...]."""
        if base not in self.ablations:
            raise ChimeraError(f"no ablation of {base!r} in {self.path.name} (there are: "
                               f"{', '.join(self.ablations) or 'none'}; add an [ablations.\"{base}\"] table)")
        against = self.ablations[base]["against"]
        ends = [self._resolve_cell(cell, profile, seed=seed, device=device) for cell in (base, against)]
        from chimera.ablation import ablation_variants

        return [apply_overrides(config, list(overrides)) for config in (*ends, *ablation_variants(*ends))]

    def _resolve_cell(self, cell: str, profile: str, *, seed: int, device: str) -> RunConfig:
        if profile not in self.profiles:
            raise ChimeraError(f"unknown profile {profile!r} (known: {', '.join(self.profiles)})")
        layers = [self.cells[cell]]
        layers += [o for o in self.profiles[profile].get("override", []) if fnmatch.fnmatchcase(cell, o["cells"])]
        merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for layer in layers:
            for name in SECTIONS:
                merged[name].update(layer.get(name, {}))
        sections = {name: build_section(cls, merged[name], where=f"{self.path.name}: {cell}/{profile} [{name}]")
                    for name, cls in SECTIONS.items()}
        return RunConfig(cell=cell, profile=profile, seed=seed, device=device, **sections)


def _require_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChimeraError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ChimeraError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    for name in SECTIONS:
        if name in table:
            _require_table(table[name], f"{where}.{name}")


def load_matrix(path: Path | str | None = None) -> Matrix:
    """Read and structurally validate a matrix file; field values are validated on `resolve`."""
    path = Path(path) if path else DEFAULT_MATRIX
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChimeraError(f"{path}: cannot read matrix file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ChimeraError(f"{path}: not valid TOML ({exc}); repair it, or restore it from git "
                           "(the packaged chimera/matrix.toml is the default)") from None
    _check_keys(data, {"cells", "profiles", "ablations"}, path.name)
    cells = _require_table(data.get("cells", {}), f"{path.name}: cells")
    profiles = _require_table(data.get("profiles", {}), f"{path.name}: profiles")
    if not cells or not profiles:
        raise ChimeraError(f"{path}: needs at least one [cells.X] and one [profiles.Y] table")
    for name, cell in cells.items():
        _check_keys(_require_table(cell, f"{path.name}: cells.{name}"), _CELL_KEYS, f"{path.name}: cells.{name}")
    for name, profile in profiles.items():
        _check_keys(_require_table(profile, f"{path.name}: profiles.{name}"), {"description", "override"},
                    f"{path.name}: profiles.{name}")
        for i, override in enumerate(profile.get("override", [])):
            where = f"{path.name}: profiles.{name}.override[{i}]"
            _check_keys(_require_table(override, where), _OVERRIDE_KEYS, where)
            if not isinstance(override.get("cells"), str):
                raise ChimeraError(f"{where}: needs cells = \"pattern\" (e.g. \"fixed/*\")")
    ablations = _require_table(data.get("ablations", {}), f"{path.name}: ablations")
    for base, spec in ablations.items():
        where = f"{path.name}: ablations.{base}"
        _check_keys(_require_table(spec, where), _ABLATION_KEYS, where)
        for name in (base, spec.get("against")):
            if name not in cells:
                raise ChimeraError(f"{where}: {name!r} is not a cell of this file (it needs against = \"<cell>\")")
    matrix = Matrix(path=path, cells=cells, profiles=profiles, ablations=ablations)
    for profile in profiles:  # fail on load, not halfway through a matrix run
        for cell in cells:
            matrix.resolve(cell, profile)
    # An ablation family is derived from two cells checked above; it is built (and its differences checked)
    # when a command asks for it, before its first run trains, so `train` of one cell does not build them all.
    return matrix
