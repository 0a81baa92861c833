"""``--config`` values: an existing file, or the bare name of a config shipped in this package.

Shared by every entry point (search, retrain, discrete search): configs ship inside this package.
"""
from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path


def shipped_configs() -> list[str]:
    """Names of the YAML files installed with the ``configs`` package."""
    return sorted(entry.name for entry in files("configs").iterdir() if entry.name.endswith((".yaml", ".yml")))


def resolve_config(name_or_path: str) -> Path:
    """The file ``name_or_path`` if it exists, else the shipped config of that name (``.yaml`` optional).

    Raises ``FileNotFoundError`` with a one-line message listing the shipped configs.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if len(path.parts) == 1:
        root = files("configs")
        for candidate in (path.name, f"{path.name}.yaml", f"{path.name}.yml"):
            if (root / candidate).is_file():
                return Path(str(root / candidate))
    raise FileNotFoundError(f"--config {name_or_path!r}: no such file and no shipped config of that name "
                            f"(shipped: {', '.join(shipped_configs()) or 'none'})")


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` / ``-c NAME`` / ``--config=NAME`` value replaced by its resolved path."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "-c"):
            value = next(args, None)
            if value is None:
                raise ValueError("--config needs a value: a YAML file or a shipped config name")
            out += [arg, str(resolve_config(value))]
        elif arg.startswith("--config="):
            out.append(f"--config={resolve_config(arg.split('=', 1)[1])}")
        else:
            out.append(arg)
    return out
