"""Choosing a host for a new VM: one `discovery.pick` of service `host`, with a deadline.

Every way the answer can fail to come (no healthy host, no discovery worker, deadline, open
circuit, lost connection) is an `Unavailable` for the caller of `manager.create`, raised
before anything is written.
"""

from __future__ import annotations

import logging

from bus.errors import (
    CircuitOpen,
    ConnectionLost,
    DeadlineExceeded,
    NoResponder,
    NotFound,
    RpcError,
    Unavailable,
)
from bus.rpc import RpcClient
from manager_worker.config import HOST_SERVICE
from schemas import InstanceView, PickRequest, Strategy

log = logging.getLogger(__name__)


class Placement:
    """Picks hosts through the discovery worker."""

    def __init__(
        self,
        rpc: RpcClient,
        *,
        strategy: Strategy,
        timeout_s: float,
        method: str = "discovery.pick",
    ) -> None:
        self.rpc = rpc
        self.method = method
        self.strategy = strategy
        self.timeout_s = timeout_s

    async def pick_host(self) -> str:
        """The instance id of a healthy host; raises `Unavailable` when there is none."""
        request = PickRequest(service=HOST_SERVICE, strategy=self.strategy)
        try:
            view = await self.rpc.call(
                self.method, request, reply=InstanceView, timeout=self.timeout_s
            )
        except NotFound as exc:
            raise Unavailable(
                f"no healthy host to place the vm on ({exc.message})",
                {"service": HOST_SERVICE, "reason": "no_healthy_host"},
                retry_after=5.0,
            ) from exc
        except CircuitOpen as exc:
            raise Unavailable(
                "placement is paused: recent discovery.pick calls failed (circuit open)",
                {"service": HOST_SERVICE, "reason": "circuit_open"},
                retry_after=exc.retry_after,
            ) from exc
        except (NoResponder, DeadlineExceeded, ConnectionLost) as exc:
            raise Unavailable(
                f"the discovery worker did not answer: {exc}",
                {"service": HOST_SERVICE, "reason": "discovery_unavailable"},
                retry_after=1.0,
            ) from exc
        except Unavailable as exc:
            raise Unavailable(
                f"no healthy host to place the vm on ({exc.message})",
                {"service": HOST_SERVICE, "reason": "no_healthy_host"},
                retry_after=exc.retry_after or 5.0,
            ) from exc
        except RpcError as exc:
            log.error("discovery.pick failed: %s", exc)
            raise Unavailable(
                f"placement failed: {exc.message}",
                {"service": HOST_SERVICE, "reason": "pick_failed"},
            ) from exc
        return view.instance.instance_id
