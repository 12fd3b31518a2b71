"""What a local cluster's nodes are given: sizes of memory and free TCP ports.

Needs: nothing but the standard library. Provides: :func:`parse_bytes` (``4GB``, ``2GiB``) and
:func:`pick_ports` (fixed ports that cannot collide with the ones Ray lets the kernel choose).
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from ipt_ray.cluster.state import LocalClusterError

# Fixed ports come from here: above Ray's default worker-port range (10002-19999) and below
# the kernel's ephemeral range, from which every port-0 bind of Ray's processes is served.
_PORT_RANGE = (20000, 32767)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_bytes(value: str | int, *, what: str = "memory") -> int:
    """``4GB`` (10^9), ``4GiB`` / ``4G`` ... (2^30), ``512MB``, ``1.5GiB`` or an int -> bytes.

    A bare unit letter (``4G``) means the binary unit, as ``docker`` and ``ulimit`` read it.

    Raises:
        LocalClusterError: the text is not a size, or it is not positive.
    """
    if isinstance(value, bool):
        raise LocalClusterError(f"{what} must be a size such as 4GB, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise LocalClusterError(
                f"{what} must be a size such as 4GB, 4GiB, 512MB or a number of bytes, "
                f"got {value!r}"
            )
        number, unit, binary = match.groups()
        power = "kmgt".find(unit.lower()) + 1 if unit else 0
        has_b = str(value).strip().lower().endswith("b")
        base = 1024 if (binary or (unit and not has_b)) else 1000
        size = int(float(number) * base**power)
    if size <= 0:
        raise LocalClusterError(f"{what} must be positive, got {value!r}")
    return size


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int) -> bool:
    # Ray's GCS and gRPC servers bind every interface, so probe the wildcard address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, taken: Iterable[int] = ()) -> list[int]:
    """``count`` distinct free TCP ports from below the ephemeral range (see ``_PORT_RANGE``)."""
    low, high = _PORT_RANGE[0], min(_PORT_RANGE[1], _ephemeral_low() - 1)
    used = set(taken)
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(2000):
        if len(chosen) == count:
            return chosen
        port = rng.randint(low, high)
        if port not in used and port_is_free(port):
            used.add(port)
            chosen.append(port)
    raise LocalClusterError(f"no free TCP port found between {low} and {high}")


__all__ = [
    "parse_bytes",
    "pick_ports",
    "port_is_free",
]
