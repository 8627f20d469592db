"""Torch backend for :class:`TabularMLP` state dicts, on CUDA when present.

On CUDA each call copies the batch into a pinned host buffer, makes one asynchronous copy to the
device, runs the model, and one copy of the scores back into a pinned output buffer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from loopline.models.export import load_state_dict
from loopline.models.runtime.base import BackendError, BackendInfo

__all__ = ["TorchBackend"]


class TorchBackend:
    """Runs a :class:`TabularMLP` rebuilt from its state dict (loaded with ``weights_only=True``)."""

    def __init__(self, data: bytes, device: str, n_features: int, n_classes: int, hidden: Sequence[int]) -> None:
        self.device = torch.device(device)
        try:
            self.model = load_state_dict(data, n_features, n_classes, hidden).to(self.device)
        except Exception as exc:  # torch raises many types for a pickle, a foreign or a mismatched state dict
            raise BackendError(f"torch can't load the state dict: {exc}") from exc
        self.info = BackendInfo("torch", device, n_features, n_classes)
        self._pinned_in: torch.Tensor | None = None
        self._pinned_out: torch.Tensor | None = None

    def _buffers(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pinned_in is None or self._pinned_in.shape[0] < rows:
            size = max(rows, 2 * (0 if self._pinned_in is None else self._pinned_in.shape[0]))
            self._pinned_in = torch.empty((size, self.info.n_features), dtype=torch.float32).pin_memory()
            self._pinned_out = torch.empty((size, self.info.n_classes), dtype=torch.float32).pin_memory()
        assert self._pinned_out is not None
        return self._pinned_in[:rows], self._pinned_out[:rows]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a float32 batch."""
        if not batch.flags.writeable:  # torch wants writable memory (decoded batches are read-only views)
            batch = batch.copy()
        with torch.inference_mode():
            if self.device.type == "cpu":
                return self.model(torch.from_numpy(batch)).numpy()
            host_in, host_out = self._buffers(len(batch))
            host_in.copy_(torch.from_numpy(batch))
            scores = self.model(host_in.to(self.device, non_blocking=True))
            host_out.copy_(scores, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            return host_out.numpy().copy()
