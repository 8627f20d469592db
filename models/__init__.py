"""loopline's model code: the network, training, export, runtime backends and the registry."""

from loopline.models.artifacts import ArtifactError, ArtifactStore, sha256_hex
from loopline.models.mlp import TabularMLP
from loopline.models.registry import ArtifactFormat, ModelVersion, Outputs, Registry, RegistryError, Status
from loopline.models.runtime import Backend, BackendError, BackendInfo, load_backend
from loopline.models.train import TrainConfig, train_mlp
from loopline.models.trees import TreesConfig
from loopline.models.versions import bootstrap_version, make_version

__all__ = [
    "ArtifactError",
    "ArtifactFormat",
    "ArtifactStore",
    "Backend",
    "BackendError",
    "BackendInfo",
    "ModelVersion",
    "Outputs",
    "Registry",
    "RegistryError",
    "Status",
    "TabularMLP",
    "TrainConfig",
    "TreesConfig",
    "bootstrap_version",
    "load_backend",
    "make_version",
    "sha256_hex",
    "train_mlp",
]
