"""Where artifact bytes live: inline in the version record up to a size limit, else in a directory.

Either way the version carries the sha256 of the bytes, and :meth:`ArtifactStore.fetch` refuses
bytes that don't match it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from models.registry import ModelVersion

__all__ = ["ArtifactError", "ArtifactStore", "sha256_hex"]


class ArtifactError(ValueError):
    """Artifact bytes are missing or don't match their sha256."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Attach artifacts to versions and fetch them back, checked.

    Args:
        directory: where artifacts above ``inline_limit`` bytes are written (``file://`` URIs).
        inline_limit: largest artifact carried inline in the version record.
    """

    def __init__(self, directory: Path, inline_limit: int) -> None:
        self.directory = directory
        self.inline_limit = inline_limit

    def attach(self, version: ModelVersion, data: bytes) -> ModelVersion:
        """``version`` carrying ``data`` inline or by URI, with its sha256."""
        digest = sha256_hex(data)
        if len(data) <= self.inline_limit:
            return replace(version, artifact=data, artifact_uri=None, sha256=digest)
        path = self.directory / version.model_name / f"{version.version}-{digest}.{version.artifact_format}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return replace(version, artifact=None, artifact_uri=path.resolve().as_uri(), sha256=digest)

    @staticmethod
    def fetch(version: ModelVersion) -> bytes:
        """The artifact bytes of ``version``, after checking their sha256.

        Raises:
            ArtifactError: the artifact is missing, unreadable, or its sha256 differs.
        """
        if version.artifact is not None:
            data = version.artifact
        elif version.artifact_uri is not None:
            uri = urlsplit(version.artifact_uri)
            if uri.scheme != "file":
                raise ArtifactError(f"unsupported artifact URI scheme {uri.scheme!r}: {version.artifact_uri}")
            try:
                data = Path(uri.path).read_bytes()
            except OSError as exc:
                raise ArtifactError(f"artifact {version.artifact_uri} is unreadable: {exc}") from exc
        else:
            raise ArtifactError(f"version {version.key} has neither an inline artifact nor a URI")
        digest = sha256_hex(data)
        if digest != version.sha256:
            raise ArtifactError(f"sha256 mismatch for {version.key}: expected {version.sha256}, got {digest}")
        return data
