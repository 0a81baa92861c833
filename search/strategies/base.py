"""The search-strategy interface: everything that differs between one-shot methods, behind one small object.

A ``SearchModule`` owns a supernet (weights) and an architecture-state module built by its strategy. Every
training batch it calls ``strategy.arch_step`` on the validation batch, then trains the weights on
``strategy.weights(arch)``. DARTS (here), GDAS, PC-DARTS, ENAS and SPOS differ only in:

===================  =========================================================================================
``build_arch``       the architecture state: alphas; alphas + edge betas; an LSTM controller; nothing
``weights``          what the weight step sees: softmax mixing weights, or a sampled path (``active``)
``arch_step``        how the state learns: a gradient step (1st/2nd order), REINFORCE, or nothing
``eval_weights``     what per-epoch validation evaluates (default: ``weights``)
``probabilities``    per cell type ``[num_edges, num_ops]`` op probabilities (history, pictures, genotype)
``genotype``         the discrete cell(s) the current state stands for
``on_epoch_start``   schedules (e.g. the GDAS temperature)
``state_dict``       strategy state outside ``arch`` that a checkpoint must restore (temperature, sampler RNG)
``unused_parameters`` whether a weight step leaves supernet parameters without gradient (sampling); DDP then
                     needs ``strategy="ddp_find_unused_parameters_true"``
===================  =========================================================================================

Randomness (Gumbel noise, sampled paths) should come from a ``torch.Generator`` the strategy owns and returns
from ``state_dict``: seeded alike on every rank it samples the same path everywhere, and it resumes exactly.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn
from torch.optim import Optimizer

from ops import Genotype, Registry
from supernet import ArchWeights

Batch = tuple[Tensor, Tensor]
"""``(images, labels)``."""


@dataclass
class ArchStepContext:
    """What an architecture step may use. Built by ``SearchModule`` once per training batch.

    Attributes:
        supernet: the weight-sharing network (``supernet(x, weights) -> logits``); not wrapped by DDP.
        arch: the architecture-state module built by ``build_arch``.
        optimizer: the architecture optimizer (over ``arch.parameters()``); ``None`` when ``arch`` has none.
        weight_optimizer: the weight optimizer (SGD): its ``param_groups`` give the current lr, momentum and
            weight decay and its ``state`` the momentum buffers (2nd-order DARTS).
        train_batch: the weight-training batch of this step.
        val_batch: the architecture (validation) batch of this step.
        criterion: ``criterion(logits, labels) -> loss``.
        backward: ``backward(loss)``; gradients it produces are averaged across DDP ranks.
        reduce: all-reduce mean of a list of tensors across ranks (identity on one process). Use it for every
            gradient made with ``torch.autograd.grad`` and for rewards, so all ranks stay bit-identical.
        last_batch: True on the last training batch of the epoch (every rank alike): the place for end-of-epoch
            work that needs data and collectives, e.g. picking the final cell (ENAS, SPOS).
        transform: what the search's regularizers do to the architecture weights in the architecture step
            (``search.robust``); apply it to every ``weights(arch)`` the step feeds the supernet.
        penalty: the regularizers' term for the validation loss (``None``: none); add it to the loss whose
            gradient reaches the alphas.
    """

    supernet: nn.Module
    arch: nn.Module
    optimizer: Optimizer | None
    weight_optimizer: Optimizer
    train_batch: Batch
    val_batch: Batch
    criterion: Callable[[Tensor, Tensor], Tensor]
    backward: Callable[[Tensor], None]
    reduce: Callable[[list[Tensor]], list[Tensor]]
    last_batch: bool = False
    transform: Callable[[ArchWeights], ArchWeights] = lambda weights: weights
    penalty: Callable[[], Tensor | None] = lambda: None


class SearchStrategy(ABC):
    """Base class of one-shot search strategies; register subclasses with ``@register_strategy(name)``."""

    name: ClassVar[str] = ""
    unused_parameters: ClassVar[bool] = False
    """True when a weight step runs only part of the supernet (sampling strategies)."""

    @abstractmethod
    def build_arch(self, supernet: nn.Module) -> nn.Module:
        """Create the architecture-state module for ``supernet`` (its parameters get the arch optimizer)."""

    @abstractmethod
    def weights(self, arch: nn.Module) -> ArchWeights:
        """The architecture weights of the weight step (kept in the autograd graph of ``arch``)."""

    def eval_weights(self, arch: nn.Module) -> ArchWeights:
        """The architecture weights used for per-epoch validation; by default ``weights(arch)``."""
        return self.weights(arch)

    @abstractmethod
    def arch_step(self, ctx: ArchStepContext) -> dict[str, Tensor]:
        """Update the architecture state from ``ctx.val_batch`` (stepping ``ctx.optimizer``); return metrics
        to log (e.g. ``{"arch_loss": ...}``)."""

    @abstractmethod
    def probabilities(self, arch: nn.Module) -> dict[str, Tensor]:
        """Detached per-edge op probabilities ``{cell_type: [num_edges, num_ops]}``."""

    @abstractmethod
    def genotype(self, arch: nn.Module, supernet: nn.Module) -> Genotype:
        """The discrete architecture the current state stands for."""

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Called at the start of every training epoch (0-based ``epoch``); schedules go here."""

    def state_dict(self) -> dict[str, Any]:
        """Strategy state outside ``arch`` (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, but the checkpoint has {sorted(state)}")


S = TypeVar("S", bound=type[SearchStrategy])
STRATEGIES: Registry[type[SearchStrategy]] = Registry("strategy", hint=" (--model.strategy)")
"""The one-shot search strategies by name."""


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator registering a ``SearchStrategy`` subclass under ``name``."""

    def decorator(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, SearchStrategy)):
            raise TypeError(f"@register_strategy({name!r}) needs a SearchStrategy subclass, got {cls!r}")
        STRATEGIES.register(name, cls)
        cls.name = name
        return cls

    return decorator


def list_strategies() -> list[str]:
    """Names of the registered strategies, sorted."""
    return STRATEGIES.names()


def strategy_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments of strategy ``name`` (for validation and ``--help``)."""
    params = inspect.signature(get_strategy_class(name)).parameters
    return {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def get_strategy_class(name: str) -> type[SearchStrategy]:
    """The class registered under ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    return STRATEGIES.get(name)


def get_strategy(name: str, **kwargs: Any) -> SearchStrategy:
    """Instantiate strategy ``name`` with ``kwargs``; unknown names or arguments raise a one-line ``ValueError``."""
    cls = get_strategy_class(name)
    allowed = strategy_arguments(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"strategy {name!r} has no argument {', '.join(map(repr, unknown))} "
                         f"(--model.strategy_args); valid: {', '.join(allowed) or 'none'}")
    return cls(**kwargs)
