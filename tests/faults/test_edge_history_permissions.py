"""The edge's history as the compose user `edge`: with the permissions of
compose/rabbitmq/definitions.json, `govbus edge` starts, reads the `govbus.log` stream and
answers `/v1/history` (a fresh private node imports the definitions)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bus import Bus
from bus.settings import load_settings
from govbus.components import COMPONENTS, running_component
from govbus.history import HistoryAlongside
from schemas import Register
from tests._edge_stack import SECRET
from tests._rabbit_node import PrivateRabbit
from tests._wait import eventually
from tests.e2e._up import free_port


async def test_the_compose_edge_user_keeps_history_from_the_log_stream(
    compose_node: PrivateRabbit, tmp_path: Path
):
    edge_url = f"amqp://edge:edge-secret@127.0.0.1:{compose_node.port}/"
    settings = load_settings(
        db=f"sqlite+aiosqlite:///{tmp_path}/edge.db",
        http=f"127.0.0.1:{free_port()}",
        auth_secret=SECRET,
    )
    async with running_component(COMPONENTS["edge"], edge_url, settings) as (edge, _):
        assert isinstance(edge, HistoryAlongside)
        history = edge.history
        # What the edge itself may publish (SPEC: registrations over HTTP), as user edge.
        async with Bus(edge_url, source="govbus/edge") as bus:
            await bus.publish(
                Register(service="web", instance_id="web-1", address="10.0.0.1", port=80)
            )
        await eventually(lambda: history.ingested == 1, timeout=15, what="read from govbus.log")
        state = await history.at(datetime.now(UTC))
    assert [i["instance_id"] for i in state["instances"]] == ["web-1"]
    assert (tmp_path / "edge-history.db").exists()
