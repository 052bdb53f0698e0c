"""The artifact store: uploads, the engine's content-addressed cache and rendered reports, under one directory.

Layout under ``settings.resolved_artifact_dir`` (the same path is mounted in every container)::

    uploads/<project id>/models/<model id>/{architecture.json, weights.<ext>}
    uploads/<project id>/datasets/<dataset id>/data.<ext>
    cache/                       the engine's trained-model cache (shared across assessments)
    reports/<assessment id>/     report.html, report.pdf, results.json, junit.xml, manifest

Client file names never reach a path: files get fixed names inside a directory named by a random id.
Uploads are copied in chunks while being hashed; past ``max_bytes`` the copy stops and the partial file
is deleted.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import BinaryIO

from backend.core.config import Settings

__all__ = ["ArtifactStore", "UploadTooLargeError", "file_sha256"]

_CHUNK = 1024 * 1024


class UploadTooLargeError(ValueError):
    """An upload passed the size limit (answered with 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"The upload is larger than the limit of {limit} bytes (AMULET_MAX_UPLOAD_BYTES). "
            "Upload a smaller file or ask the operator to raise the limit."
        )


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """Paths of the artifact store rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        """The store at ``settings.resolved_artifact_dir``."""
        return cls(settings.resolved_artifact_dir)

    @property
    def cache_dir(self) -> Path:
        """The engine's content-addressed cache (trained models), shared by every assessment."""
        return self.root / "cache"

    def upload_dir(self, project_id: str, kind: str, item_id: str) -> Path:
        """Directory of one uploaded model or dataset (created)."""
        path = self.root / "uploads" / project_id / kind / item_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report_dir(self, assessment_id: str) -> Path:
        """Directory of an assessment's rendered reports (created)."""
        path = self.root / "reports" / assessment_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def save_stream(source: BinaryIO, dest: Path, *, max_bytes: int) -> tuple[str, int]:
        """Copy ``source`` to ``dest`` in chunks, hashing as it goes; returns (sha256, size).

        Raises:
            UploadTooLargeError: more than ``max_bytes`` bytes (``dest`` is removed).
        """
        digest = hashlib.sha256()
        size = 0
        try:
            with dest.open("wb") as out:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLargeError(max_bytes)
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size

    @staticmethod
    def discard(path: Path) -> None:
        """Remove an upload directory (after a failed validation)."""
        shutil.rmtree(path, ignore_errors=True)
