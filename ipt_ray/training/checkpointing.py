"""A finished run's checkpoint as a folder of its own: the best weights and the config,
written atomically into a new folder that was checked before training started.

A trial's checkpoints inside a search are Ray's (:mod:`ipt_ray.tuning.worker`); this is the
checkpoint of ``ipt_ray.train(..., out=...)`` / ``ipt-ray train --out``, which ``ipt-ray
export`` turns into a bundle. No Ray, no MLflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ipt_ray.errors import SettingError

if TYPE_CHECKING:
    from ipt_ray.training.loop import TrainingRun


def check_new_folder(path: str | Path, setting: str = "out") -> Path:
    """Check that a folder to write does not exist yet (or is empty) and can be created, before
    any work starts; nothing is created here, so a call refused later leaves no folder behind.

    Args:
        path: the folder to write.
        setting: the keyword argument that named it, for the error.

    Returns:
        The absolute path.

    Raises:
        SettingError: ``path`` exists and is not an empty folder, or its nearest existing
            parent is not a writable folder.
    """
    out = Path(path).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SettingError(
            f"{{{setting}}} {out} already exists and is not an empty folder; pick a new path"
        )
    existing = next(p for p in out.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise SettingError(f"{{{setting}}} {out}: the folder {existing} is not writable")
    return out


def write_checkpoint(run: TrainingRun, out_dir: Path) -> None:
    """Write the run's best weights + config to ``out_dir`` (absent or empty) atomically: into a
    temporary folder beside it, then renamed, so that a crash leaves no half checkpoint.

    The model keeps the best weights afterwards (they are loaded before writing).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ipt-ray-", dir=out_dir.parent))
    try:
        if run.best_state is not None:
            run.model.load_trainable_state_dict(run.best_state)
        run.save_checkpoint(tmp, with_train_state=False)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["check_new_folder", "write_checkpoint"]
