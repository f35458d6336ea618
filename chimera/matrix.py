"""The experiment matrix as data: `matrix.toml` resolved into a `RunConfig` per (cell, profile).

The code never branches on a cell's name: cells and profiles are only section overrides, applied in
order defaults -> cell -> matching profile overrides -> `--set`.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera.config import SECTIONS, RunConfig, apply_overrides, build_section
from chimera.errors import ChimeraError

DEFAULT_MATRIX = Path(__file__).with_name("matrix.toml")
_CELL_KEYS = {"description", *SECTIONS}
_OVERRIDE_KEYS = {"cells", *SECTIONS}


@dataclass(frozen=True)
class Matrix:
    """Parsed matrix file; `resolve` turns a (cell, profile) into a validated `RunConfig`."""

    path: Path
    cells: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, Any]]

    def resolve(self, cell: str, profile: str, *, seed: int = 0, device: str = "auto",
                overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        if cell not in self.cells:
            raise ChimeraError(f"unknown cell {cell!r} (known: {', '.join(self.cells)})")
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
        config = RunConfig(cell=cell, profile=profile, seed=seed, device=device, **sections)
        return apply_overrides(config, list(overrides))


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
    _check_keys(data, {"cells", "profiles"}, path.name)
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
    matrix = Matrix(path=path, cells=cells, profiles=profiles)
    for cell in cells:  # fail on load, not halfway through a matrix run
        for profile in profiles:
            matrix.resolve(cell, profile)
    return matrix
