"""Where downloaded and derived data live, and how they are written safely.

Writers take a per-item lock (``fcntl.flock``) so that concurrent processes (Ray trials)
do the work once, and publish files with ``os.replace`` from a temporary file in the same
directory so that a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Environment variable that overrides :func:`cache_root`.
CACHE_ENV = "IPT_RAY_CACHE"


def cache_root() -> Path:
    """The cache directory: ``$IPT_RAY_CACHE`` if set, else ``~/.cache/ipt-ray``.

    Created on demand. Holds ``tasks/<name>/`` (parsed offline tasks) and ``tokenized/``.
    """
    configured = os.environ.get(CACHE_ENV, "").strip()
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "ipt-ray"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block.

    On platforms without ``fcntl`` the block runs unlocked; atomic renames still keep every
    published file whole, at worst the work is done twice.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        yield
        return
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it replaces ``final`` atomically.

    If the block raises, the temporary file is removed and ``final`` is left untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it owner-only; cached data is not secret
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def save_keyed_tensors(path: Path, key: str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Publish ``tensors`` as a safetensors file whose metadata records ``key`` (atomically).

    ``key`` says what the tensors were computed from; :func:`load_keyed_tensors` returns them
    only for the same key, so a changed input never reads a stale file.
    """
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata={"key": key})


def load_keyed_tensors(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The tensors :func:`save_keyed_tensors` wrote for ``key``, else None.

    None when the file is missing, was written for another key, or cannot be read (a
    warning is logged then: the caller recomputes and overwrites it).
    """
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("key") != key:
                return None
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        logger.warning("ignoring unreadable cache file %s: %s", path, exc)
        return None
