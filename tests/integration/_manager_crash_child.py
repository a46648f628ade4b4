"""Test-only: a manager process that commits a change and is killed before any relay runs.

`python -m tests.integration._manager_crash_child DB_URL QUEUE` starts a manager worker with
its outbox relay off (on a private embedded bus: it needs no broker), creates one network
through `manager.create`, prints the resource id and then waits to be SIGKILLed.
"""

from __future__ import annotations

import asyncio
import sys

from bus import Bus
from manager_worker import SOURCE, ManagerConfig, bootstrap


async def main(db_url: str, queue: str) -> None:
    url = "memory://crash-child"
    bus = Bus(url, source=SOURCE)
    await bus.start()
    worker = await bootstrap(bus=bus, db_url=db_url, config=ManagerConfig(queue=queue, relay=False))
    await worker.start()
    client = Bus(url, source="test")
    await client.start()
    reply = await client.call(
        "manager.create", {"spec": {"kind": "network", "name": "lan", "cidr": "10.0.0.0/8"}}
    )
    print(reply["id"], flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
