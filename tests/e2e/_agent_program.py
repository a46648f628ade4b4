"""An asyncio service kept in the registry by a `ServiceAgent`, as a process.

    python -m tests.e2e._agent_program URL INSTANCE_ID [handler]

It prints `ready` once registered, and says how it stopped: `cancelled` (its main task was
cancelled, as `asyncio.run` does on Ctrl-C) then `interrupted` (KeyboardInterrupt, exit 130);
with `handler` it installs its own SIGTERM handler first, which prints `app handler ran` and
exits 4; with `loop` its event loop handles SIGTERM (`loop.add_signal_handler`, as aiohttp and
uvicorn do): it prints `loop handler ran` and leaves its `async with` blocks, exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType

from bus import Bus
from bus.agent import ServiceAgent
from schemas import Register


async def serve(url: str, instance_id: str, mode: str) -> None:
    stop = asyncio.Event()
    if mode == "loop":
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    registration = Register(
        service="agentprog", instance_id=instance_id, address="127.0.0.1", port=9
    )
    async with Bus(url, source="agent-program") as bus, ServiceAgent(bus, registration) as agent:
        print("ready" if agent.registered else "not registered", flush=True)
        try:
            await stop.wait()
            print("loop handler ran", flush=True)
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    print("app handler ran", flush=True)
    sys.exit(4)


def main() -> None:
    url, instance_id, mode = sys.argv[1], sys.argv[2], "".join(sys.argv[3:])
    if mode == "handler":
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        asyncio.run(serve(url, instance_id, mode))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
