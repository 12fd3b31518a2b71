"""A filesystem check shared by the layers: a folder the caller will write into."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ipt_ray.errors import UserError


def check_writable_dir(path: Path, what: str, *, min_free: int = 0) -> None:
    """Prove ``path`` writable (and with ``min_free`` bytes free) without creating it.

    A folder that does not exist yet is judged by the nearest existing folder above it, where
    it would be created: a command refused after this check leaves no empty folder behind.
    """
    path = path.expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{what} {path} is not a folder: {existing} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ipt-ray-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable: {exc.strerror or exc}") from None
    if min_free:
        free = shutil.disk_usage(existing).free
        if free < min_free:
            raise UserError(
                f"{what} {path} has only {free // 2**20} MiB free; a search needs at least "
                f"{min_free // 2**20} MiB for checkpoints"
            )
