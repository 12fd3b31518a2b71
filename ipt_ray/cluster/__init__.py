"""Clusters: a real multi-node Ray cluster on this machine, and job submission.

- :mod:`.local`: start, grow, stop and inspect a local cluster (the why of every setting is
  in its docstring); :mod:`.state` (its description and state file), :mod:`.nodes` (one
  node's ``ray start``), :mod:`.processes` (finding and stopping its processes),
  :mod:`.resources` (memory sizes, free ports).
- :mod:`.submit`: a search as a Ray job (``ipt-ray search --address http://...``).

The local-cluster names below import only the standard library. ``submit`` is used as
a module (``from ipt_ray.cluster import submit``).
"""

from __future__ import annotations

from ipt_ray.cluster.local import (
    add_worker_node,
    local_cluster_status,
    start_local_cluster,
    stop_local_cluster,
)
from ipt_ray.cluster.processes import cluster_processes
from ipt_ray.cluster.resources import parse_bytes
from ipt_ray.cluster.state import (
    DEFAULT_NODE_IP,
    DEFAULT_ROOT,
    STATE_FILE,
    LocalCluster,
    LocalClusterError,
    LocalClusterStatus,
    read_state,
    write_state,
)

__all__ = [
    "DEFAULT_NODE_IP",
    "DEFAULT_ROOT",
    "STATE_FILE",
    "LocalCluster",
    "LocalClusterError",
    "LocalClusterStatus",
    "add_worker_node",
    "cluster_processes",
    "local_cluster_status",
    "parse_bytes",
    "read_state",
    "start_local_cluster",
    "stop_local_cluster",
    "write_state",
]
