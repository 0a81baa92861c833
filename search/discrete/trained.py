"""Evaluators for spaces without a lookup table: a cell trained from scratch, or scored with a supernet's weights.

Both follow the ``Evaluator`` protocol of ``search.discrete.evaluator`` and work in both spaces (NB201 and DARTS
cells), so random search, regularized evolution and REINFORCE run over any space with them::

    evaluator = TrainedEvaluator(DigitsDataModule(search_split=True, subset=512), epochs=2, channels=8, layers=5)
    result = RegularizedEvolution().search(DartsCellSpace(), evaluator, Budget(evaluations=20), seed=0)

Sizes (``size``, checked before a cell is evaluated) are the params and multiply-adds of the cell's standalone
network at the retrain configuration (``search.cost``'s cost model: a sum of table entries, microseconds per cell).
"""
from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ops import Genotype
from search.cost.model import CostModel, reference_genotype, standalone
from search.discrete.evaluator import Evaluation


class _Sizes:
    """Params and multiply-adds (millions) of a cell's standalone network at the retrain configuration, from a cost
    model built once."""

    def __init__(self, space: Any, num_classes: int, image_shape: tuple[int, int, int]) -> None:
        from retrain.build import kinds_for

        network = kinds_for(reference_genotype(space))[0]
        with torch.random.fork_rng(devices=[]):
            net = standalone(reference_genotype(space), network, None, None, num_classes, image_shape[0])
            self.model = CostModel.build(space, net, image_shape, ("params", "flops"))

    def __call__(self, cell: Genotype) -> tuple[float, float]:
        return self.model.genotype_cost(cell, "params"), self.model.genotype_cost(cell, "flops")


def _space_of(cell_space: Any) -> Any:
    """The ``ops`` search space (cost model, edge layout) of a discrete cell space."""
    from ops import DartsSpace, NB201Space

    if cell_space.name == "nb201":
        return NB201Space()
    return DartsSpace(("none", *cell_space.ops), cell_space.steps, cell_space.multiplier)


def _cell_space_of(cell: Genotype) -> Any:
    """The discrete space a cell lies in, when the evaluator was not told (DARTS: all its ops, the cell's nodes)."""
    from ops import NB201Genotype
    from search.discrete.darts_space import DartsCellSpace
    from search.discrete.space import NB201Space

    if isinstance(cell, NB201Genotype):
        return NB201Space()
    return DartsCellSpace(steps=len(cell.normal) // 2, multiplier=len(cell.normal_concat))


class _SizedEvaluator:
    """Sizes of cells at the retrain configuration, in the space searched (``bind_space``, called by the search
    command) or else in the first sized cell's space."""

    num_classes: int
    image_shape: tuple[int, int, int]
    cell_space: Any = None
    _size: _Sizes | None = None

    def bind_space(self, cell_space: Any) -> None:
        """Size cells in ``cell_space`` (the space searched); a space this evaluator cannot score raises ``ValueError``."""
        if cell_space is not self.cell_space:
            self.cell_space, self._size = cell_space, None

    def size(self, cell: Genotype) -> tuple[float, float]:
        """Params and FLOPs (M) of the cell at the retrain configuration."""
        if self._size is None:
            if self.cell_space is None:
                self.cell_space = _cell_space_of(cell)
            self._size = _Sizes(_space_of(self.cell_space), self.num_classes, self.image_shape)
        return self._size(cell)


class TrainedEvaluator(_SizedEvaluator):
    """A cell's standalone network (``retrain.build_network`` at ``channels`` / ``layers``) trained from scratch for
    ``epochs`` on the data module's weight-training split (SGD, momentum 0.9, cosine learning rate) and scored by its
    accuracy on the validation split; deterministic under ``seed`` (every cell starts from the same seed).

    Args:
        data: A ``nasdata`` data module with ``search_split=True`` (its ``train``/``val`` halves are used).
        epochs: Training epochs per cell.
        channels: Initial channels of the trained network.
        layers: Its cells (NB201: cells per stage).
        lr: Initial SGD learning rate.
        weight_decay: SGD weight decay.
        seed: Seed of every cell's initial weights and data order.
    """

    metric_name = "val_acc"
    cost_unit = "seconds"

    def __init__(self, data: Any, epochs: int = 1, channels: int = 8, layers: int = 5,
                 lr: float = 0.05, weight_decay: float = 3e-4, seed: int = 0) -> None:
        for key, value in (("epochs", epochs), ("channels", channels), ("layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainedEvaluator: {key} must be an integer >= 1, got {value!r}")
        if not getattr(data, "search_split", False):
            raise ValueError("TrainedEvaluator needs a data module with search_split=True (train / val halves)")
        data.setup("fit")
        self.data, self.epochs, self.channels, self.layers = data, epochs, channels, layers
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.num_classes = data.num_classes
        self.image_shape = (data.in_channels, data.image_size, data.image_size)

    def bind_space(self, cell_space: Any) -> None:
        """Search ``cell_space``; settings that cannot build its networks (too few ``layers``) raise ``ValueError``."""
        from retrain import build_network

        if cell_space is self.cell_space:
            return
        try:
            with torch.random.fork_rng(devices=[]):
                build_network(reference_genotype(_space_of(cell_space)), num_classes=self.num_classes,
                              channels=self.channels, layers=self.layers, in_channels=self.data.in_channels)
        except ValueError as err:
            raise ValueError(f"TrainedEvaluator in the {cell_space.name} space: {err}") from None
        super().bind_space(cell_space)

    def evaluate(self, cell: Genotype) -> Evaluation:
        """Train the cell's network from scratch and score it; the cost is the wall-clock seconds it took."""
        from retrain import build_network

        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            L.seed_everything(self.seed, verbose=False)
            net = build_network(cell, num_classes=self.data.num_classes, channels=self.channels, layers=self.layers,
                                in_channels=self.data.in_channels)
            loaders = self.data.train_dataloader()
            steps = self.epochs * len(loaders["train"])
            optimizer = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
            net.train()
            for _ in range(self.epochs):
                for x, y in loaders["train"]:
                    loss = F.cross_entropy(net(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                    optimizer.step()
                    schedule.step()
            accuracy, val_loss = _score(net, loaders["val"])
        params, flops = self.size(cell)
        if not math.isfinite(val_loss):  # training diverged: the cell scores nothing
            accuracy = 0.0
        return Evaluation(accuracy, params, flops, time.perf_counter() - start, val_loss)


class SharedWeightEvaluator(_SizedEvaluator):
    """A cell scored with the weights of a trained supernet (a search run's checkpoint, any one-shot strategy):
    its single path's validation accuracy (%) with batch-norm statistics re-estimated for it first
    (``search.fidelity.shared_weight_accuracy``): ``bn_batches + val_batches`` forward passes per cell (about 2.5 s
    on one CPU thread for the NB201 supernet at C=8, N=1), against minutes for training the cell.

    Args:
        run_dir: The search run folder (its ``config.yaml``).
        checkpoint: The checkpoint (default: the folder's ``checkpoints/last.ckpt``).
        bn_batches: Training batches the batch-norm statistics are re-estimated on, per cell.
        val_batches: Validation batches the accuracy is measured on.
    """

    metric_name = "shared_weight_acc"
    cost_unit = "seconds"

    def __init__(self, run_dir: str, checkpoint: str | None = None, bn_batches: int = 4,
                 val_batches: int = 20) -> None:
        from search.cli import load_run
        from search.strategies.probe import first_batches

        model, data = load_run(run_dir, checkpoint)
        self.run_dir, self.supernet = run_dir, model.supernet
        loaders = data.train_dataloader()
        self.bn_batches = first_batches(loaders["train"], bn_batches)
        self.val_batches = first_batches(data.val_dataloader(), val_batches)
        self.num_classes = self.supernet.classifier.out_features
        self.image_shape = (data.in_channels, data.image_size, data.image_size)

    def bind_space(self, cell_space: Any) -> None:
        """Search ``cell_space``; it must be the supernet's space."""
        if self.supernet.search_space.name != _space_of(cell_space).name:
            raise ValueError(f"the supernet of {self.run_dir} searches the {self.supernet.search_space.name} space, "
                             f"the discrete search the {cell_space.name} space")
        super().bind_space(cell_space)

    def evaluate(self, cell: Genotype) -> Evaluation:
        """The cell's shared-weight accuracy."""
        from search.fidelity import shared_weight_accuracy

        start = time.perf_counter()
        (accuracy,) = shared_weight_accuracy(self.supernet, [cell], self.bn_batches, self.val_batches)
        params, flops = self.size(cell)
        return Evaluation(accuracy, params, flops, time.perf_counter() - start)


def _score(net: torch.nn.Module, loader: Any) -> tuple[float, float]:
    """Accuracy (%) and mean loss of ``net`` on ``loader`` in eval mode."""
    net.eval()
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in loader:
            logits: Tensor = net(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / total, loss / total
