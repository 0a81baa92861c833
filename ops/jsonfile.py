"""The one JSON writer of the project: strict JSON (a non-finite number is an error, not a bare ``NaN``), written
atomically (a temporary file renamed into place), numbers of an innermost list on one line; and the atomic text
writer it uses (reports)."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_NUMBER_LIST = re.compile(r"\[\s+([-+.\deE]+(?:,\s+[-+.\deE]+)*)\s+\]")


def write_json(path: str | os.PathLike, data: Any, indent: int = 1) -> None:
    """Write ``data`` to ``path``; a NaN or infinity raises ``ValueError`` naming the file (nothing is written)."""
    path = Path(path)
    try:
        text = json.dumps(data, indent=indent, allow_nan=False)
    except ValueError as err:
        raise ValueError(f"{path}: refusing to write non-strict JSON ({err})") from None
    write_text(path, _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file of its own in the same folder (so that processes
    writing the same file at once never mix), renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
