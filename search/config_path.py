"""Resolve ``--config`` values: an existing path, or the bare name of a config shipped in ``configs/``."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Sequence


def shipped_configs() -> list[str]:
    """File names of the YAML configs installed with the ``configs`` package."""
    return sorted(p.name for p in files("configs").iterdir() if p.name.endswith((".yaml", ".yml")))


def resolve_config(name_or_path: str) -> Path:
    """Return ``name_or_path`` if it is an existing file, else the shipped config of that name.

    ``nb201_evolution`` and ``nb201_evolution.yaml`` both resolve to the shipped file. An unknown name raises
    ``FileNotFoundError`` with a one-line message listing the shipped configs.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.name == str(name_or_path):  # a bare name, no directory part: look in the package
        root = files("configs")
        for candidate in (name_or_path, f"{name_or_path}.yaml", f"{name_or_path}.yml"):
            entry = root / candidate
            if entry.is_file():
                return Path(str(entry))
    raise FileNotFoundError(
        f"config {name_or_path!r} is neither an existing file nor a shipped config "
        f"(shipped: {', '.join(shipped_configs()) or 'none'})")


def resolve_config_args(argv: Sequence[str], flag: str = "--config") -> list[str]:
    """Copy of ``argv`` with every ``--config NAME`` / ``--config=NAME`` value replaced by its resolved path."""
    out: list[str] = []
    expect_value = False
    for arg in argv:
        if expect_value:
            out.append(str(resolve_config(arg)))
            expect_value = False
        elif arg == flag:
            out.append(arg)
            expect_value = True
        elif arg.startswith(flag + "="):
            out.append(f"{flag}={resolve_config(arg[len(flag) + 1:])}")
        else:
            out.append(arg)
    return out
