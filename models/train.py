"""Training a :class:`TabularMLP` with torch: seeded, on the GPU when asked; one line logged per training
(each epoch's loss at DEBUG)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from loopline.models.mlp import TabularMLP

__all__ = ["TrainConfig", "accuracy", "train_mlp"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run."""

    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0
    min_steps: int = 500
    """Fewest optimiser steps: on few rows, more epochs than ``epochs`` (400 rows at batch 256 take 250)."""

    family = "mlp"

    def as_strings(self) -> dict[str, str]:
        """The hyper-parameters as the string map recorded in a version's lineage, with the family."""
        values = asdict(self)
        values["hidden"] = ",".join(str(w) for w in self.hidden)
        return {"family": self.family} | {key: str(value) for key, value in values.items()}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> TrainConfig:
        """Inverse of :meth:`as_strings`."""
        return cls(
            hidden=tuple(int(w) for w in values["hidden"].split(",") if w),
            epochs=int(values["epochs"]),
            batch_size=int(values["batch_size"]),
            learning_rate=float(values["learning_rate"]),
            weight_decay=float(values["weight_decay"]),
            seed=int(values["seed"]),
            min_steps=int(values.get("min_steps", 0)),  # absent: recorded before it existed, trained without
        )


def train_mlp(x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig, device: str = "cpu") -> TabularMLP:
    """Fit a fresh :class:`TabularMLP` to features ``x`` (float32) and class indices ``y``.

    It runs ``config.epochs`` epochs, or more on few rows: at least ``config.min_steps`` optimiser
    steps. The same inputs, config and device give the same weights: the seed drives the initial
    weights and the shuffling, and the CPU path uses deterministic kernels.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = TabularMLP(x.shape[1], n_classes, config.hidden)
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    model.mean.copy_(features.mean(dim=0))
    model.scale.copy_(features.std(dim=0).clamp_min(1e-6))
    model.to(device)
    features, labels = features.to(device), labels.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    epochs = max(config.epochs, -(-config.min_steps // max(1, -(-len(features) // config.batch_size))))
    total = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(features), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model.logits(features[batch]), labels[batch])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        log.debug("epoch %d/%d loss %.4f", epoch + 1, epochs, total / max(len(order), 1))
    log.info("trained an MLP %s on %d rows, %d epochs on %s: last epoch's loss %.4f",
             "x".join(str(w) for w in config.hidden) or "without hidden layers", len(features), epochs, device,
             total / max(len(features), 1))  # fmt: skip
    return model.cpu().eval()


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose arg-max class is ``y``."""
    return float(np.mean(np.argmax(probabilities, axis=1) == y)) if len(y) else float("nan")
