"""Where trials run: ``SerialPool`` (this process, one at a time; the default, nothing extra to install) or
``RayPool`` (Ray actors, one per worker, on this machine or a cluster; ``pip install -e ".[ray]"``).

A pool takes ``submit(trial, cell)`` while it has a ``free`` worker and hands back ``(trial, outcome)`` from
``next_result`` as trials finish, in whatever order they finish; an outcome is the ``Evaluation`` or the exception
the trial ended with (a worker that died gives ``WorkerDied``), so the caller decides what a failure means.
"""
from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from search.discrete.evaluator import Evaluation, Evaluator

RAY_EXTRA = 'pip install -e ".[ray]"'


class WorkerDied(RuntimeError):
    """The process running a trial ended before the trial did."""


class SerialPool:
    """Runs each trial in this process when its result is asked for."""

    workers = 1

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._queue: list[tuple[int, Any]] = []

    @property
    def running(self) -> int:
        """Trials submitted and not yet handed back."""
        return len(self._queue)

    @property
    def free(self) -> int:
        """Trials that can be submitted now."""
        return self.workers - self.running

    def submit(self, trial: int, cell: Any) -> None:
        """Queue ``cell`` as ``trial``."""
        self._queue.append((trial, cell))

    def next_result(self) -> tuple[int, Evaluation | BaseException]:
        """Evaluate the queued trial."""
        trial, cell = self._queue.pop(0)
        try:
            return trial, self.evaluator.evaluate(cell)
        except Exception as err:  # noqa: BLE001 - a failing trial is recorded, the search goes on
            return trial, err

    def cancel(self) -> None:
        """Forget the queued trials."""
        self._queue.clear()

    def close(self) -> None:
        """Nothing to release."""


class _Worker:
    """A Ray actor holding one copy of the evaluator."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def evaluate(self, cell: Any) -> Evaluation:
        return self.evaluator.evaluate(cell)

    def ready(self) -> bool:
        return True


class RayPool:
    """``workers`` Ray actors, each with its own copy of the evaluator (shipped once through the object store).

    Args:
        evaluator: What each worker evaluates cells with (must pickle).
        workers: Actors, one CPU each (``cpus_per_worker``), plus ``gpus_per_worker``.
        address: A Ray cluster (``ray://host:10001`` or ``auto``); ``None`` starts a local Ray with ``workers`` CPUs.
    """

    def __init__(self, evaluator: Evaluator, workers: int, address: str | None = None, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(f"--workers {workers} runs trials on Ray, which is not installed: {RAY_EXTRA}") from None
        self.ray = ray
        self.workers = workers
        self._started = not ray.is_initialized()
        if self._started:
            if address not in (None, "auto"):
                check_reachable(address)
            try:
                if address is None:
                    ray.init(num_cpus=int(max(workers * cpus_per_worker, 1)), include_dashboard=False,
                             log_to_driver=False, configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as err:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ...
                where = "a local Ray" if address is None else f"the Ray cluster at {address}"
                raise ValueError(f"cannot start {where}: {str(err).splitlines()[0]}") from None
        self._actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0)(_Worker)
        self._idle: list[Any] = []
        self._running: dict[Any, tuple[int, Any]] = {}
        try:
            self._evaluator = ray.put(evaluator)
        except Exception as err:  # noqa: BLE001 - pickling raises TypeError, PicklingError, ...
            self.close()
            raise ValueError(f"the evaluator {type(evaluator).__name__} cannot be sent to Ray workers "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        self._idle = [self._actor.remote(self._evaluator) for _ in range(workers)]
        try:
            ray.get([actor.ready.remote() for actor in self._idle])
        except ray.exceptions.RayError as err:
            self.close()
            cause = str(getattr(err, "cause", None) or err).strip().splitlines()
            raise ValueError(f"the evaluator cannot be loaded on a Ray worker (is this project installed there?): "
                             f"{cause[-1] if cause else type(err).__name__}") from None

    @property
    def running(self) -> int:
        """Trials submitted and not yet handed back."""
        return len(self._running)

    @property
    def free(self) -> int:
        """Idle workers."""
        return len(self._idle)

    def submit(self, trial: int, cell: Any) -> None:
        """Start ``cell`` on an idle worker."""
        actor = self._idle.pop()
        self._running[actor.evaluate.remote(cell)] = (trial, actor)

    def next_result(self) -> tuple[int, Evaluation | BaseException]:
        """Wait for the first trial to finish; a dead worker is replaced by a new one."""
        ray = self.ray
        (ref,), _ = ray.wait(list(self._running), num_returns=1)
        trial, actor = self._running.pop(ref)
        try:
            outcome: Evaluation | BaseException = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            outcome = WorkerDied(f"the worker running trial {trial} died ({type(err).__name__})")
            ray.kill(actor)
            actor = self._actor.remote(self._evaluator)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else None
            outcome = cause if cause is not None else RuntimeError(str(err).splitlines()[-1])
        except ray.exceptions.RayError as err:  # out of memory, a lost node or object: the worker is gone
            outcome = WorkerDied(f"the worker running trial {trial} failed ({type(err).__name__})")
            ray.kill(actor)
            actor = self._actor.remote(self._evaluator)
        self._idle.append(actor)
        return trial, outcome

    def cancel(self) -> None:
        """Stop the trials in flight; their workers are replaced by fresh ones, so the pool serves the next search."""
        for _, actor in self._running.values():
            self.ray.kill(actor)
            self._idle.append(self._actor.remote(self._evaluator))
        self._running = {}

    def close(self) -> None:
        """Stop the workers, and the local Ray if this pool started it."""
        for actor in [*self._idle, *(a for _, a in self._running.values())]:
            self.ray.kill(actor)
        self._idle, self._running = [], {}
        if self._started:
            self.ray.shutdown()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse in one line a cluster address (``host:port`` or ``ray://host:port``) where nothing answers; Ray itself
    would retry for a minute and then abort the process."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ValueError(f"--ray_address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"--ray_address {address}: no Ray cluster answers there ({err.strerror or err})") from None


def make_pool(evaluator: Evaluator, workers: int = 1, address: str | None = None) -> SerialPool | RayPool:
    """One worker: ``SerialPool``; more, or a cluster ``address``: ``RayPool``."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if workers == 1 and address is None:
        return SerialPool(evaluator)
    return RayPool(evaluator, workers, address)
