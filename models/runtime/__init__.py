"""Runtime backends behind one interface: load an artifact, predict a float32 batch, describe it."""

from loopline.models.runtime.base import Backend, BackendError, BackendInfo
from loopline.models.runtime.load import load_backend

__all__ = ["Backend", "BackendError", "BackendInfo", "load_backend"]
