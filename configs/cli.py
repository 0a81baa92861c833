"""What every command line of the project shares (search, retrain, discrete search): errors condensed to one line
naming the flag or file and what is allowed, exit status 2 for bad input, and library output held back while a run
is built so that a bad input prints nothing but its error."""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import re
import sys
import warnings
from argparse import ArgumentParser
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")  # Lightning's own use of the config library
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # Lightning on torch >= 2.9

EXIT_USAGE = 2
"""The exit status of a command refused for bad input."""
DEBUG_ENV = "NAS_DEBUG"
"""Set to 1 to get full tracebacks instead of one-line errors."""


def read_checkpoint(path: str | Path, flag: str = "--resume") -> dict[str, Any]:
    """Load a Lightning checkpoint on the CPU for a pre-check; a missing, unreadable or non-checkpoint file raises
    one line naming ``flag`` (``FileNotFoundError`` / ``ValueError``)."""
    import torch  # here, not at import: the discrete-search CLI needs no torch to start

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such checkpoint file")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many kinds for a damaged file
        first = str(err).splitlines()[0][:120] if str(err) else "corrupt"
        raise ValueError(f"{flag} {path}: not a readable checkpoint ({type(err).__name__}: {first})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{flag} {path}: not a Lightning checkpoint (no state_dict)")
    from configs.guard import check_finite_checkpoint

    check_finite_checkpoint(checkpoint, path, flag)
    return checkpoint


def check_links(prefix: str, given: Mapping[str, Any], target: type, data: Mapping[str, Any]) -> None:
    """Raise one line if a value the data module decides (``data``: key -> the data's value, linked into
    ``target``'s argument of that name) was also set under ``prefix`` to something else than both ``target``'s
    default and the data's value: the link would silently override it."""
    defaults = {k: p.default for k, p in inspect.signature(target).parameters.items()}
    for key, value in data.items():
        mine = given.get(key)
        if mine is not None and mine != defaults.get(key) and mine != value:
            raise ValueError(f"{prefix}.{key} {mine} conflicts with the data, which has {value}: the model takes its "
                             f"{key} from --data; drop {prefix}.{key}")


def fail(prog: str, error: BaseException, parser: ArgumentParser | None = None) -> int:
    """Print ``<prog>: error: <one line>`` on stderr; return ``EXIT_USAGE``."""
    print(f"{prog}: error: {one_line(error, parser)}", file=sys.stderr)
    return EXIT_USAGE


_NOISE = ("Does not validate against any of", "Subtypes:", "Errors:", "Given value type:",
          "Expected a <class 'NoneType'>", "Parser key", "Problem with given class_path")


def _tidy(text: str) -> str:
    return re.sub(r"<class '([\w.]+)'>", r"\1", text).strip().rstrip(":")


def _valid_keys(parser: ArgumentParser | None, prefix: str) -> list[str]:
    if parser is None:
        return []
    keys = set()
    for action in parser._actions:  # noqa: SLF001 -- argparse keeps no public list of options
        dest = getattr(action, "dest", "")
        if dest.startswith(prefix + "."):
            keys.add(dest[len(prefix) + 1:].split(".")[0])
    return sorted(keys)


def _class_options(class_path: str) -> list[str]:
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(__import__(module_name, fromlist=[name]), name)
        return [k for k, p in inspect.signature(cls).parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                   p.KEYWORD_ONLY)]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def one_line(error: BaseException, parser: ArgumentParser | None = None) -> str:
    """Condense an error (jsonargparse's nested ones included) into one line naming the culprit."""
    message = str(error).strip() or type(error).__name__
    required = re.match(r'Parser key "([^"]+)":.*Got value: None\s*$', " ".join(message.split()))
    if required:
        return f"--{required.group(1)} is required"
    lines = [re.sub(r"^-\s+", "", line.strip()) for line in message.splitlines() if line.strip()]
    accelerator = re.search(r"No supported (\w+) backend found|(\w+) accelerator.* not available", message, re.I)
    if accelerator:
        kind = (accelerator.group(1) or accelerator.group(2)).lower()
        return f"--trainer.accelerator {kind}: no {kind} device is available on this machine; use cpu or auto"
    keys = re.findall(r'Parser key "([^"]+)"', message)
    expected = re.search(r"Expected a <class '(\w+)'>\. Got value: (.*)", message)
    if len(keys) > 1 and expected:  # a nested option (a class_path's init argument) of the wrong type
        return f"--{'.'.join(keys)}: expected {'an' if expected.group(1)[0] in 'aeiou' else 'a'} " \
               f"{expected.group(1)}, got {expected.group(2).strip()!r}"
    key = re.search(r'Parser key "([^"]+)"', message)
    class_path = re.search(r"Problem with given class_path '([^']+)'", message)
    unknown = re.search(r"unrecognized arguments: (\S+)", message)
    if unknown:
        flag = unknown.group(1).split("=")[0]
        prefix = flag.lstrip("-").rpartition(".")[0]
        valid = _valid_keys(parser, prefix) if prefix else []
        where = f"; valid under --{prefix}: {', '.join(valid)}" if valid else "; see --help"
        return f"unrecognized arguments: {flag}{where}"
    option = re.search(r"Option '([^']+)' is not accepted", message)
    if option and class_path:
        valid = _class_options(class_path.group(1))
        culprit = f"--{key.group(1)}.{option.group(1)}" if key else repr(option.group(1))
        return (f"{culprit}: {class_path.group(1)} has no option {option.group(1)!r}"
                + (f"; valid: {', '.join(valid)}" if valid else ""))
    group = re.search(r"Group '([^']+)' does not accept option '([^']+)'", message)
    if group:
        valid = _valid_keys(parser, group.group(1))
        return (f"unknown config key {group.group(1)}.{group.group(2)}"
                + (f"; valid under {group.group(1)}: {', '.join(valid)}" if valid else ""))
    if lines[0].startswith("Problems parsing config"):  # YAML syntax: keep what and where
        return " ".join(" ".join(lines).split())
    causes = [line for line in lines if not line.startswith(_NOISE) and not line.startswith("Given value:")]
    given = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), None)
    cause = _tidy(causes[0]) if causes else _tidy(lines[-1])
    if cause.startswith("Expected a") and given is not None and len(given) < 80:
        cause += f", got {given!r}"
    if class_path and class_path.group(1) not in cause:
        cause = f"{class_path.group(1)}: {cause}"
    if key and not cause.startswith(("--" + key.group(1), key.group(1))):
        cause = f"--{key.group(1)}: {cause}"
    if len(causes) > 1 and not cause.startswith("Problems parsing config"):
        cause += f" ({_tidy(causes[1])})" if len(causes[1]) < 120 else ""
    return " ".join(cause.split())


@contextlib.contextmanager
def held_output(release: list[bool]) -> Iterator[None]:
    """Hold back what Lightning prints while the run is built (log records, warnings, stderr): shown afterwards
    if ``release[0]`` is true, dropped otherwise, so that a bad input prints nothing but its one-line error."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collector = _Collect()
    for lg in loggers:
        lg.handlers = [collector]
        lg.propagate = False
    stderr = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
            warnings.simplefilter("default")
            yield
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
        if release[0]:
            for record in records:
                logging.getLogger(record.name).handle(record)
            for w in caught:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            sys.stderr.write(stderr.getvalue())


