"""Consul's answer shapes built from govbus instances: exactly the fields the declared models
(and so `/openapi.json`) say, checks mapped from statuses, and Consul's query flags."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from http_edge._consul_body import TTL_CHECK_META
from http_edge._consul_models import (
    AgentService,
    CatalogQuery,
    CatalogService,
    HealthQuery,
    ServiceEntry,
    admitted,
    agent_service,
    catalog_service,
    checks_of,
    service_entry,
)
from schemas.checks import Check, CheckState
from schemas.registry import Instance


def instance(**changes: object) -> Instance:
    fields: dict[str, object] = {
        "service": "web",
        "instance_id": "web-1",
        "address": "10.0.0.7",
        "port": 8080,
        "tags": ["blue"],
        "meta": {"rack": "r1"},
        "weight": 3,
        "status": "passing",
        "registered_at": datetime(2026, 1, 1, tzinfo=UTC),
        "ttl_s": 30,
    }
    return Instance.model_validate({**fields, **changes})


def same_fields(data: dict[str, object], model: type[BaseModel]) -> None:
    assert set(data) == set(model.model_fields), set(data) ^ set(model.model_fields)
    model.model_validate(data)


def test_answers_have_exactly_the_declared_fields():
    web = instance()
    entry = service_entry(web, "dc1", 7)
    same_fields(entry, ServiceEntry)
    same_fields(entry["Service"], AgentService)
    same_fields(catalog_service(web, "dc1", 7), CatalogService)
    same_fields(agent_service(web, "dc1", 7), AgentService)
    assert entry["Node"]["Node"] == entry["Node"]["Address"] == "10.0.0.7"
    assert entry["Node"]["Meta"] == {"rack": "r1"} and entry["Service"]["Weights"]["Passing"] == 3
    assert catalog_service(web, "dc1", 7)["ID"] == entry["Node"]["ID"]  # one node id per address


def test_checks_map_the_instance_status_maintenance_and_active_checks():
    http = CheckState(check=Check(http="http://10.0.0.7/health"), status="warning", output="slow")
    tcp = CheckState(check=Check(id="db", tcp="10.0.0.7:5432"), status="passing")
    web = instance(status="warning", note="busy", checks=[http, tcp])
    checks = checks_of(web, 4)
    assert [(c["CheckID"], c["Status"], c["Type"]) for c in checks] == [
        ("service:web-1", "warning", "ttl"),
        ("check-1", "warning", "http"),
        ("db", "passing", "tcp"),
    ]
    assert checks[0]["Output"] == "busy" and checks[1]["Output"] == "slow"
    draining = checks_of(instance(status="draining"), 4)
    assert [(c["CheckID"], c["Status"]) for c in draining] == [
        ("_service_maintenance:web-1", "critical")
    ]
    own = checks_of(instance(meta={TTL_CHECK_META: "web-ttl"}, ttl_s=0), 4)
    assert (own[0]["CheckID"], own[0]["Type"]) == ("web-ttl", "")


def test_query_flags_node_meta_and_tags():
    query = HealthQuery.model_validate(
        {"passing": "", "stale": "1", "node-meta": ["rack:r1"], "tag": ["blue"], "wait": "60000ms"}
    )
    assert query.passing and query.stale and query.wait == 60.0
    assert query.meta_pairs() == {"rack": "r1"} and admitted(instance(), query)
    assert not admitted(instance(), CatalogQuery.model_validate({"tag": ["blue", "green"]}))
    assert not admitted(instance(), CatalogQuery.model_validate({"node-meta": ["rack:r2"]}))
    assert HealthQuery.model_validate({"index": "0"}).blocking_index() is None
    for bad in ({"passing": "maybe"}, {"node-meta": ["rack"]}, {"filter": "x"}):
        with pytest.raises(ValidationError):
            HealthQuery.model_validate(bad)
