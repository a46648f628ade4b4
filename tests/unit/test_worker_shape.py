"""`bus.worker`: the one shape both workers follow, and the helpers that wire them."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
from pydantic import BaseModel

import discovery_worker
import manager_worker
from bus import Bus
from bus.message import EventMeta
from bus.rpc import Method
from bus.worker import bind_events, bind_methods, method_table, worker_store
from schemas import RPC_CONTRACT, Heartbeat, ServiceRequest, ServiceView

WORKERS = [discovery_worker, manager_worker]


@dataclass(frozen=True)
class Ctx:
    name: str


class Reply(BaseModel):
    said: str


async def answer(request: ServiceRequest, *, ctx: Ctx) -> Reply:
    return Reply(said=f"{ctx.name}:{request.name}")


async def on_heartbeat(event: Heartbeat, meta: EventMeta, *, ctx: Ctx) -> None:
    raise LookupError(ctx.name, event.instance_id)


def test_a_method_table_takes_its_models_from_the_contract():
    table = method_table(RPC_CONTRACT, {"discovery.service": answer})
    assert table == {"discovery.service": Method(ServiceRequest, answer, ServiceView)}
    with pytest.raises(ValueError, match=r"not in the RPC contract: discovery\.nope"):
        method_table(RPC_CONTRACT, {"discovery.nope": answer})


async def test_bound_handlers_are_given_the_context_and_served_under_the_service():
    table = method_table(RPC_CONTRACT, {"discovery.service": answer})
    (served, method), *_ = bind_methods(table, Ctx("c1"), service="t1.discovery").items()
    assert served == "t1.discovery.service"
    assert (method.request, method.reply) == (ServiceRequest, ServiceView)
    assert await method.handler(ServiceRequest(name="web")) == Reply(said="c1:web")

    handlers = bind_events({Heartbeat.TYPE: on_heartbeat}, Ctx("c2"))
    with pytest.raises(LookupError) as info:
        await handlers[Heartbeat.TYPE](Heartbeat(service="s", instance_id="i"), None)
    assert info.value.args == ("c2", "i")


@pytest.mark.parametrize("worker", WORKERS, ids=lambda m: m.__name__)
def test_each_worker_lists_its_methods_from_the_contract_and_gives_handlers_ctx(worker):
    assert worker.RPC_METHODS, "a worker serves methods"
    for name, method in worker.RPC_METHODS.items():
        assert (method.request, method.reply) == RPC_CONTRACT[name]
    handlers = [m.handler for m in worker.RPC_METHODS.values()]
    for handler in [*handlers, *worker.EVENT_HANDLERS.values()]:
        keyword_only = [
            p.name
            for p in inspect.signature(handler).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ]
        assert keyword_only == ["ctx"], handler.__qualname__


@pytest.mark.parametrize("worker", WORKERS, ids=lambda m: m.__name__)
async def test_each_worker_is_built_and_run_the_same_way(worker, memory_url, tmp_path):
    assert inspect.iscoroutinefunction(worker.bootstrap)
    params = inspect.signature(worker.bootstrap).parameters
    assert list(params)[:5] == ["bus", "store", "db_url", "clock", "config"]
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())

    bus = Bus(memory_url, source="shape")
    built = await worker.bootstrap(bus=bus, db_url=f"sqlite+aiosqlite:///{tmp_path}/w.db")
    try:
        assert built.ready is False  # nothing connects before start()
        assert inspect.iscoroutinefunction(built.start)
        assert inspect.iscoroutinefunction(built.stop)
    finally:
        await built.store.close()


async def test_a_worker_owns_only_the_store_it_opened(tmp_path):
    store, owned = worker_store(None, f"sqlite+aiosqlite:///{tmp_path}/a.db")
    try:
        assert owned is True
        assert worker_store(store, "ignored") == (store, False)
    finally:
        await store.close()
