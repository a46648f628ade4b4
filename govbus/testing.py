"""The `replay` pytest fixture, with govbus's real discovery and manager workers.

govbus installs this module as a pytest plugin (entry point `pytest11: govbus`), so the fixture
is there in every project that has govbus installed; elsewhere add
`pytest_plugins = ["govbus.testing"]` to a `conftest.py`. Tests run under pytest-asyncio.

    async def test_a_silent_instance_expires(replay):
        await replay.start_workers()
        await replay.run("tests/logs/expiry.jsonl")
        state = await replay.state()
        assert [i["instance_id"] for i in state["instances"]] == ["web-1"]
        assert replay.produced_types("registry.instance.expired") == [...]

    async def test_my_handlers(replay):
        seen = []

        async def on_register(event: Register, meta: EventMeta) -> None:
            seen.append((event.instance_id, meta.time))

        await replay.subscribe({"registry.register": on_register})
        await replay.run("tests/logs/registrations.jsonl")
        assert len(seen) == 3

`replay` is a `bus.testing.LogReplay`; events the workers publish (sources `govbus/discovery`,
`govbus/manager`) are never fed to it: the workers regenerate them.
"""

from __future__ import annotations

from bus.replay import Participants
from bus.testing import LogReplay, replay_fixture

__all__ = ["LogReplay", "replay"]


def _workers() -> Participants:
    # The workers load when a test asks for the fixture, not with every pytest run.
    from govbus.replay import Workers

    return Workers()


replay = replay_fixture(_workers, name="replay")
