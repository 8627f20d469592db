"""The default tabular classifier: standardisation, an MLP of configurable widths, softmax."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TabularMLP"]


class TabularMLP(nn.Module):
    """Maps a float32 batch of shape (rows, n_features) to class probabilities (rows, n_classes).

    The feature mean and scale are buffers of the module, so the artifact carries its own
    preprocessing and serving needs nothing but the raw feature vector.

    Args:
        n_features: width of the input.
        n_classes: number of classes.
        hidden: widths of the hidden layers (ReLU after each).
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_classes = n_classes
        self.hidden = tuple(hidden)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        widths = [n_features, *self.hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], n_classes))
        self.layers = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised class scores (used for training)."""
        return self.layers((x - self.mean) / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities."""
        return torch.softmax(self.logits(x), dim=1)

    def linear_layers(self) -> list[nn.Linear]:
        """The Linear layers in order (for export)."""
        return [layer for layer in self.layers if isinstance(layer, nn.Linear)]
