"""The SHA-256 of a file (checkpoints, model configs, prepared tables)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in blocks (multi-GB checkpoints included)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
