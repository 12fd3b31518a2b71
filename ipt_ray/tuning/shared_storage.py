"""Is a storage path shared by every node of the Ray cluster?

Ray Train needs one storage location that all nodes reach (a shared file system or an object
store): a trial restored on another node, and the driver collecting checkpoints, read what the
workers wrote. A local path on a multi-node cluster is checked, not assumed: the driver writes
a marker file, and a zero-CPU task pinned to every alive node looks for it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ipt_ray.errors import SettingError


def _sees(path: str) -> tuple[str, bool]:
    import socket

    return socket.gethostname(), os.path.exists(path)


def check_shared_storage(storage: str, *, timeout: float = 60.0) -> None:
    """Raise SettingError when a local ``storage`` path is not visible from every alive node.

    URIs (``s3://``, ``gs://``, ...) and single-node clusters pass without a probe.
    """
    if "://" in storage:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    directory = Path(storage)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f".ipt-ray-shared-{uuid.uuid4().hex}"
    marker.write_text("ipt-ray storage probe\n")
    try:
        probe = ray.remote(num_cpus=0)(_sees)
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)
            ).remote(str(marker))
            for n in nodes
        ]
        results = ray.get(refs, timeout=timeout)
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted({host for host, seen in results if not seen})
    if blind:
        raise SettingError(
            f"storage {storage} is not shared by all {len(nodes)} nodes (not visible on "
            f"{', '.join(blind)}); give {{storage}} a shared file system path or an s3:// / "
            "gs:// URI"
        )
