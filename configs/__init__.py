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


def check_config_file(path: Path, given: str) -> None:
    """Raise one line naming ``--config given`` if the file is not YAML text holding a non-empty mapping."""
    import yaml  # PyYAML comes with the config library; imported here to keep this module light

    raw = path.read_bytes()
    try:
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"--config {given}: not a text file (not UTF-8); expected a YAML config") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ValueError(f"--config {given}: not valid YAML{line} ({problem})") from None
    if not isinstance(data, dict) or not data:
        held = "nothing" if data is None else f"a {type(data).__name__}"
        raise ValueError(f"--config {given}: holds {held}; expected a YAML mapping of sections (trainer:, model:, "
                         "data:, ...)")


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` / ``-c NAME`` / ``--config=NAME`` value replaced by its resolved path."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "-c"):
            value = next(args, None)
            if value is None:
                raise ValueError("--config needs a value: a YAML file or a shipped config name")
            path = resolve_config(value)
            check_config_file(path, value)
            out += [arg, str(path)]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
            path = resolve_config(value)
            check_config_file(path, value)
            out.append(f"--config={path}")
        else:
            out.append(arg)
    return out
