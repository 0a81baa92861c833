"""The journal of one discrete search: every proposal and every outcome, one JSON line each, appended and flushed to
disk as it happens, so a search killed at any moment resumes from it without running a finished trial again.

The first line identifies the search (strategy and its settings, space, evaluator, size limit, seed); a resume with
a journal of another search is refused. A line cut short by a kill is dropped (its trial runs again).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

VERSION = 1


class Journal:
    """Append-only event log at ``path``; ``events`` holds the events of an earlier run (empty for a new one).

    Args:
        path: The ``.jsonl`` file.
        search: What identifies the search (JSON-ready); compared with the header of an existing file.
        resume: Continue an existing file; without it an existing file is replaced.
    """

    def __init__(self, path: str | os.PathLike, search: dict[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.search = json.loads(json.dumps(search))
        self.events: list[dict[str, Any]] = []
        if resume and self.path.is_file():
            self.events = self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"journal": VERSION, "search": self.search}], "w")
        self._handle = self.path.open("a")

    def _read(self) -> list[dict[str, Any]]:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good = len(raw) - len(lines[-1])  # bytes up to the last complete line
        parsed: list[dict[str, Any]] = []
        for line in lines[:-1]:
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"history file {self.path}: line {len(parsed) + 1} is not JSON; not a journal "
                                 "of this library") from None
        if (not parsed or not all(isinstance(line, dict) for line in parsed) or parsed[0].get("journal") != VERSION
                or "search" not in parsed[0]):
            raise ValueError(f"history file {self.path} is not a search journal (version {VERSION})")
        if parsed[0]["search"] != self.search:
            theirs = parsed[0]["search"]
            keys = sorted(k for k in {*theirs, *self.search} if theirs.get(k) != self.search.get(k))
            raise ValueError(f"history file {self.path} is from another search (differs in: {', '.join(keys)}); "
                             "pass --overwrite true or another --name")
        if good < len(raw):  # a line cut short by a kill
            with self.path.open("r+b") as handle:
                handle.truncate(good)
        return parsed[1:]

    def _write_lines(self, lines: list[dict[str, Any]], mode: str) -> None:
        with self.path.open(mode) as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, event: dict[str, Any]) -> None:
        """Write ``event`` as one line and flush it to disk."""
        self._handle.write(json.dumps(event) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
