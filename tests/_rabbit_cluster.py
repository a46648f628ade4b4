"""A private three-node RabbitMQ cluster on this machine, for the fault suite.

Each node is a ``PrivateRabbit`` (own node name, ports, ``HOME``, mnesia); the nodes share an
Erlang cookie and one epmd that the cluster starts itself (on its own port, marked as the
cluster's, not a node's), so killing a node with SIGKILL leaves epmd, and with it
``rabbitmqctl`` and distribution between the survivors, alone. Nodes 2 and 3 join node 1 with
``rabbitmqctl stop_app; join_cluster; start_app``, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests._rabbit_node import (
    _LOW_BAND,
    DIR_PREFIX,
    MARKER,
    PrivateRabbit,
    RabbitNodeError,
    _kill_marked,
    _pick_port,
    reap_stale,
)
from tests._wait import wait_until

EPMD = shutil.which("epmd") or "/usr/bin/epmd"


class PrivateCluster:
    """``size`` private nodes clustered together; ``stop()`` stops every one and epmd."""

    def __init__(self, size: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX + "cluster-"))
        (self.dir / "owner.pid").write_text(f"{os.getpid()}\n")  # reap_stale() finds it
        taken: set[int] = set()
        self.epmd_port = _pick_port(_LOW_BAND, taken)
        cookie = secrets.token_hex(16).upper()
        self.nodes = [
            PrivateRabbit(cookie=cookie, epmd_port=self.epmd_port, taken=taken) for _ in range(size)
        ]

    @property
    def url(self) -> str:
        """`GOVBUS_URL` listing every node, first node first."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        reap_stale()
        env = {**os.environ, MARKER: str(self.dir), "ERL_EPMD_PORT": str(self.epmd_port)}
        subprocess.run(
            [EPMD, "-daemon", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            env=env,
            check=True,
            timeout=10,
        )
        first, *others = self.nodes
        first.start()
        for node in others:
            node.start()
            node.rabbitmqctl("stop_app")
            node.rabbitmqctl("join_cluster", first.nodename)
            node.start_app()
        running = self.running_nodes(first)
        if len(running) != len(self.nodes):
            raise RabbitNodeError(f"the cluster formed with {running}, not every node")

    def running_nodes(self, via: PrivateRabbit) -> list[str]:
        """Names of the running nodes, as `via` sees them."""
        out = via.rabbitmqctl("cluster_status", "--formatter", "json")
        return sorted(json.loads(out)["running_nodes"])

    def wait_running(self, count: int, via: PrivateRabbit, timeout: float = 60.0) -> list[str]:
        """The running nodes once there are `count` of them, or as last seen after `timeout`
        s (the caller asserts on the list, naming the nodes)."""
        running: list[str] = []

        def formed() -> bool:
            running[:] = self.running_nodes(via)
            return len(running) == count

        with contextlib.suppress(AssertionError):  # timed out: the list says who is missing
            wait_until(formed, timeout=timeout, interval=0.2)
        return running

    def consumers(
        self, via: PrivateRabbit, *, not_on: PrivateRabbit | None = None
    ) -> dict[str, int]:
        """``{queue: consumers}`` as `via` sees them, leaving out consumers whose channel is on
        node `not_on`. A quorum queue keeps the consumers of a node it lost contact with
        (RabbitMQ 3.10: `suspected_down`, in case it was a partition) until that node is back,
        so counting them all after a node died says nothing about the survivors."""
        out = via.rabbitmqctl(
            "-q", "list_consumers", "--no-table-headers", "queue_name", "channel_pid"
        )
        counts: dict[str, int] = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            queue, channel = line.rsplit("\t", 1)
            if not_on is not None and not_on.nodename.split("@")[0] in channel:
                continue
            counts[queue] = counts.get(queue, 0) + 1
        return counts

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        _kill_marked(str(self.dir))
        shutil.rmtree(self.dir, ignore_errors=True)
