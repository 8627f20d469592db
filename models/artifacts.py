"""Where artifact bytes live: inline in the version record up to a size limit, else in a directory.

Either way the version carries the sha256 of the bytes, and :meth:`ArtifactStore.fetch` refuses
bytes that don't match it. A version record says where its artifact is, and anyone who can write
the model-versions topic writes version records, so a URI is only followed to a regular file
inside the store's directory (symlinks resolved first): not to ``/etc/passwd``, another model
elsewhere on disk, a FIFO that would block the reader, or a device that never ends. Every
artifact, inline or on disk, is at most ``max_bytes`` long, and a file is read with that bound.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from loopline.models.registry import ModelVersion

__all__ = ["DEFAULT_MAX_BYTES", "ArtifactError", "ArtifactStore", "read_bounded", "sha256_hex"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""The default size cap of an artifact (``LOOPLINE_REGISTRY_MAX_ARTIFACT_BYTES``)."""


class ArtifactError(ValueError):
    """Artifact bytes are missing, not where artifacts may be, too large, or don't match their sha256."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused beyond ``limit`` bytes.

    The file is checked with ``stat`` before it is opened (a FIFO or a device is never opened),
    opened without blocking and without following a last symlink, checked again on the open
    descriptor (the same file, still regular), and read at most ``limit + 1`` bytes.

    Raises:
        ArtifactError: the path is not a regular file, is larger than ``limit``, or can't be read.
    """
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise ArtifactError(f"{path} is not a regular file")
        if before.st_size > limit:
            raise ArtifactError(f"{path} has {before.st_size} bytes, more than the artifact limit of {limit}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                raise ArtifactError(f"{path} changed while it was opened")
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ArtifactError(f"{path} is unreadable: {exc}") from exc
    if size > limit:
        raise ArtifactError(f"{path} grew beyond the artifact limit of {limit} bytes while it was read")
    return b"".join(chunks)


class ArtifactStore:
    """Attach artifacts to versions and fetch them back, checked.

    Args:
        directory: where artifacts above ``inline_limit`` bytes are written (``file://`` URIs), and
            the only place a URI may point to.
        inline_limit: largest artifact carried inline in the version record.
        max_bytes: largest artifact attached or fetched.
    """

    def __init__(self, directory: Path, inline_limit: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.inline_limit = inline_limit
        self.max_bytes = max_bytes

    def attach(self, version: ModelVersion, data: bytes) -> ModelVersion:
        """``version`` carrying ``data`` inline or by URI, with its sha256.

        A file gets a name of its own (version, sha256 and a random part), written whole before it
        is renamed into place, so that :meth:`discard` of a refused version never removes a file
        that a published version points to.

        Raises:
            ArtifactError: ``data`` is larger than ``max_bytes``, or the model name would put the
                file outside the directory.
        """
        if len(data) > self.max_bytes:
            raise ArtifactError(f"the artifact has {len(data)} bytes, more than the limit of {self.max_bytes}")
        digest = sha256_hex(data)
        if len(data) <= self.inline_limit:
            return replace(version, artifact=data, artifact_uri=None, sha256=digest)
        name = f"{version.version}-{digest}-{uuid.uuid4().hex[:8]}.{version.artifact_format}"
        path = (self.directory / version.model_name / name).resolve()
        if not path.is_relative_to(self.directory.resolve()):
            raise ArtifactError(f"model name {version.model_name!r} would place its artifact outside {self.directory}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)
        return replace(version, artifact=None, artifact_uri=path.as_uri(), sha256=digest)

    def discard(self, version: ModelVersion) -> None:
        """Remove the file :meth:`attach` wrote for ``version``, which was refused and never published."""
        if version.artifact_uri is not None:
            self.path_of(version.artifact_uri).unlink(missing_ok=True)

    def path_of(self, uri: str) -> Path:
        """The file a ``file://`` URI names, resolved, if it lies inside the directory.

        Raises:
            ArtifactError: another scheme or host, a relative or missing path, or a path that
                resolves (symlinks followed) outside the directory.
        """
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ArtifactError(f"unsupported artifact URI {uri}: only file:///path inside {self.directory}")
        path = Path(unquote(parts.path))
        if not path.is_absolute():
            raise ArtifactError(f"artifact URI {uri} has no absolute path")
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise ArtifactError(f"artifact {uri} is unreadable: {exc}") from exc
        if not resolved.is_relative_to(self.directory.resolve()):
            raise ArtifactError(f"artifact {uri} lies outside the artifact directory {self.directory.resolve()}")
        return resolved

    def fetch(self, version: ModelVersion) -> bytes:
        """The artifact bytes of ``version``, after checking where they are, their size and their sha256.

        Raises:
            ArtifactError: the artifact is missing, outside the directory, not a regular file,
                larger than ``max_bytes``, unreadable, or its sha256 differs.
        """
        if version.artifact is not None:
            data = version.artifact
            if len(data) > self.max_bytes:
                raise ArtifactError(
                    f"the inline artifact has {len(data)} bytes, more than the limit of {self.max_bytes}"
                )
        elif version.artifact_uri is not None:
            data = read_bounded(self.path_of(version.artifact_uri), self.max_bytes)
        else:
            raise ArtifactError(f"version {version.key} has neither an inline artifact nor a URI")
        digest = sha256_hex(data)
        if digest != version.sha256:
            raise ArtifactError(f"sha256 mismatch for {version.key}: expected {version.sha256}, got {digest}")
        return data
