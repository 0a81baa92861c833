"""What a search checkpoint holds besides the module and optimizer states: the strategy's, the regularizers' and
the selection's own state and the random-number generators, so that a run resumed from an end-of-epoch checkpoint
continues exactly like the uninterrupted run."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def save_search_state(module: Any, checkpoint: dict[str, Any]) -> None:
    """Add ``module``'s (a ``SearchModule``) strategy, regularizer, selection and cost states and the RNG states."""
    checkpoint["search_strategy"] = {"name": module.strategy.name, "state": module.strategy.state_dict()}
    checkpoint["regularizers"] = [r.state_dict() for r in module.regularizers]
    if module.selection is not None:
        checkpoint["selection"] = module.selection.state_dict()
    if module.cost is not None:
        checkpoint["cost"] = module.cost.state_dict()
    checkpoint["rng_states"] = rng_states()


def load_search_state(module: Any, checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """Restore what ``save_search_state`` wrote into ``module``; returns the RNG states (restored by the module
    at the start of fit). Raises one line if the checkpoint comes from another strategy or setup."""
    saved = checkpoint.get("search_strategy")
    if saved is None:
        raise ValueError("the checkpoint holds no search-strategy state; it was not written by SearchModule")
    if saved["name"] != module.strategy.name:
        raise ValueError(f"the checkpoint was written by strategy {saved['name']!r}, this run uses "
                         f"{module.strategy.name!r}")
    module.strategy.load_state_dict(saved["state"])
    states = checkpoint.get("regularizers", [])
    if len(states) != len(module.regularizers):
        raise ValueError(f"the checkpoint was written with {len(states)} regularizer(s), this run has "
                         f"{len(module.regularizers)} (--model.regularizers)")
    for regularizer, state in zip(module.regularizers, states):
        regularizer.load_state_dict(state)
    problem = setup_mismatch(module, checkpoint)
    if problem is not None:
        raise ValueError(problem)
    if module.selection is not None:
        module.selection.load_state_dict(checkpoint["selection"])
    if module.cost is not None:
        module.cost.load_state_dict(checkpoint["cost"])
    return checkpoint.get("rng_states")


def setup_mismatch(module: Any, checkpoint: dict[str, Any]) -> str | None:
    """One line if ``checkpoint`` was written with another perturbation selection or cost setup than ``module``
    has (present or not; the cost's kind), else ``None``."""
    for part, flag in (("selection", "--model.selection (perturbation selection)"),
                       ("cost", "--model.cost (the cost objective)")):
        if (getattr(module, part) is None) != (part not in checkpoint):
            return f"the checkpoint and this run differ in {flag}"
    if module.cost is not None and checkpoint["cost"].get("kind", module.cost.kind) != module.cost.kind:
        return (f"the checkpoint was written with --model.cost.kind {checkpoint['cost']['kind']}, this run has "
                f"{module.cost.kind}")
    return None


def rng_states() -> dict[str, Any]:
    """The global random-number generator states: Python, NumPy, torch CPU and (if present) CUDA."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned (CUDA only when the device count matches)."""
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
