"""The wire contract: what parses, what is refused (naming the field), and the catalogs."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import schemas
from schemas import (
    EVENT_TYPES,
    RESOURCE_ADAPTER,
    RPC_CONTRACT,
    SPEC_ADAPTER,
    CreateResourceRequest,
    Event,
    Heartbeat,
    Instance,
    InstanceRegistered,
    Network,
    NetworkSpec,
    PickRequest,
    Register,
    ResourceCreated,
    ResourceObserved,
    ResourceReply,
    ResourcesRequest,
    ServiceRequest,
    UpdateResourceRequest,
    Vm,
    VmPatch,
    VmSpec,
    Volume,
    VolumeSpec,
    event_model,
    validate_patch,
)

REGISTER = {"service": "web", "instance_id": "web-1", "address": "127.0.0.1", "port": 8080}
VM = {"kind": "vm", "name": "web-1", "vcpus": 2, "memory_mb": 2048, "image": "debian-12"}
VOLUME = {"kind": "volume", "name": "data-1", "size_gb": 10, "attached_to": "web-1"}
NETWORK = {"kind": "network", "name": "net-1", "cidr": "10.0.0.0/24"}
STORED = {
    "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "status": "active",
    "host": "host-1",
    "version": 1,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}

SPEC_EVENT_TYPES = {
    "registry.register",
    "registry.heartbeat",
    "registry.heartbeats",
    "registry.deregister",
    "registry.drain",
    "resource.observed",
    "registry.check",
    "registry.instance.registered",
    "registry.instance.status_changed",
    "registry.instance.expired",
    "registry.instance.deregistered",
    "registry.protection.entered",
    "registry.protection.exited",
    "registry.heartbeat.unknown",
    "resource.created",
    "resource.updated",
    "resource.status_changed",
    "resource.deleted",
    "resource.drift",
}


def bad_fields(model: Any, data: Any) -> set[str]:
    """Validate data that must be refused; return the dotted location of each error."""
    validate = model.model_validate if hasattr(model, "model_validate") else model.validate_python
    with pytest.raises(ValidationError) as info:
        validate(data)
    return {".".join(str(part) for part in err["loc"]) for err in info.value.errors()}


# --- registry ------------------------------------------------------------------------------------


def test_register_from_spec_example_gets_defaults():
    event = Register.model_validate(REGISTER)

    assert event.TYPE == "registry.register"
    assert (event.ttl_s, event.deregister_after_s, event.weight) == (30, 90, 1)
    assert (event.tags, event.meta) == ([], {})


def test_register_accepts_fractional_ttl_hostnames_and_ipv6():
    event = Register.model_validate(
        {**REGISTER, "address": "::1", "ttl_s": 0.5, "deregister_after_s": 0}
    )
    assert event.ttl_s == 0.5
    assert Register.model_validate({**REGISTER, "address": "Web-1.Example.com"}).address


def test_duplicate_tags_are_dropped_keeping_order():
    event = Register.model_validate({**REGISTER, "tags": ["b", "a", "b"]})
    assert event.tags == ["b", "a"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"service": ""}, "service"),
        ({"service": "Web"}, "service"),
        ({"service": "web*"}, "service"),
        ({"service": "web#1"}, "service"),
        ({"service": "-web"}, "service"),
        ({"service": "a" * 64}, "service"),
        ({"instance_id": "web 1"}, "instance_id"),
        ({"instance_id": "web-"}, "instance_id"),
        ({"address": ""}, "address"),
        ({"address": "999.1.1.1"}, "address"),
        ({"address": "web_1.local"}, "address"),
        ({"tags": [f"t{i}" for i in range(33)]}, "tags"),
        ({"tags": ["a,b"]}, "tags.0"),
        ({"tags": ["line\nbreak"]}, "tags.0"),
        ({"meta": {f"k{i}": "v" for i in range(65)}}, "meta"),
        ({"meta": {"k": "v" * 513}}, "meta.k"),
        ({"meta": {"bad key": "v"}}, "meta.bad key.[key]"),
        ({"ttl_s": -1}, "ttl_s"),
        ({"weight": 0}, "weight"),
    ],
)
def test_register_refuses_bad_input_naming_the_field(change, field):
    assert field in bad_fields(Register, {**REGISTER, **change})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"load": 1.5}, "load"),
        ({"load": float("nan")}, "load"),
        ({"status": "draining"}, "status"),
        ({"status": "unknown"}, "status"),
        ({"note": "x" * 1025}, "note"),
    ],
)
def test_heartbeat_refuses_bad_input(change, field):
    assert field in bad_fields(Heartbeat, {"service": "web", "instance_id": "web-1", **change})


def test_unknown_fields_on_events_are_ignored():
    event = Register.model_validate({**REGISTER, "zone": "eu-1"})
    assert "zone" not in event.model_dump()

    registered = InstanceRegistered.model_validate(
        {
            "instance": {**REGISTER, "status": "passing", "registered_at": STORED["created_at"]},
            "added_later": True,
        }
    )
    assert registered.instance.status == "passing"


def test_events_are_frozen():
    event = Register.model_validate(REGISTER)
    with pytest.raises(ValidationError):
        event.port = 1  # type: ignore[misc]


def test_datetimes_must_be_aware_and_become_utc():
    instance = Instance.model_validate(
        {**REGISTER, "status": "passing", "registered_at": "2024-05-01T14:00:00+02:00"}
    )
    assert instance.registered_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert instance.registered_at.utcoffset() is not None
    naive = {**REGISTER, "status": "passing", "registered_at": "2024-05-01T12:00:00"}
    assert "registered_at" in bad_fields(Instance, naive)


def test_resource_observed_caps_its_list():
    item = {"kind": "vm", "name": "web-1", "status": "active"}
    assert ResourceObserved.model_validate({"host": "host-1", "resources": [item]}).resources
    assert "resources" in bad_fields(
        ResourceObserved, {"host": "host-1", "resources": [item] * 10_001}
    )


# --- resources -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "cls"), [(VM, VmSpec), (VOLUME, VolumeSpec), (NETWORK, NetworkSpec)]
)
def test_spec_union_picks_the_class_of_its_kind(data, cls):
    assert type(SPEC_ADAPTER.validate_python(data)) is cls


@pytest.mark.parametrize(("data", "cls"), [(VM, Vm), (VOLUME, Volume), (NETWORK, Network)])
def test_resource_union_picks_the_class_of_its_kind(data, cls):
    resource = RESOURCE_ADAPTER.validate_python({**data, **STORED})
    assert type(resource) is cls
    assert resource.version == 1


def test_resource_serialises_flat():
    resource = RESOURCE_ADAPTER.validate_python({**VM, **STORED})
    dumped = RESOURCE_ADAPTER.dump_python(resource, mode="json")
    assert dumped == {**VM, **STORED, "labels": {}}
    assert ResourceReply.model_validate(dumped).model_dump(mode="json") == dumped


def test_network_cidr_is_normalised():
    spec = NetworkSpec.model_validate({**NETWORK, "cidr": "2001:DB8::/32"})
    assert spec.cidr == "2001:db8::/32"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**NETWORK, "cidr": "10.0.0.1/24"}, "network.cidr"),
        ({**NETWORK, "cidr": "not-a-cidr"}, "network.cidr"),
        ({**VOLUME, "size_gb": -1}, "volume.size_gb"),
        ({**VM, "name": "a" * 64}, "vm.name"),
        ({**VM, "name": "web 1"}, "vm.name"),
        ({**VM, "vcpus": 0}, "vm.vcpus"),
        ({**VM, "memory_mb": 32}, "vm.memory_mb"),
        ({**VM, "image": ""}, "vm.image"),
        ({**VM, "id": "smuggled"}, "vm.id"),
        ({**VM, "kind": "disk"}, ""),
        ({"name": "web-1"}, ""),
    ],
)
def test_specs_refuse_bad_input(data, field):
    assert field in bad_fields(SPEC_ADAPTER, data)


def test_stored_resource_inside_an_event_ignores_unknown_fields():
    event = ResourceCreated.model_validate(
        {"resource": {**VOLUME, **STORED, "iops": 3000}, "version": 1, "trace": "x"}
    )
    assert isinstance(event.resource, Volume)
    assert "iops" not in event.model_dump()


def test_patch_keeps_only_given_fields_and_allows_detaching():
    request = UpdateResourceRequest.model_validate(
        {"name": "data-1", "expected_version": 3, "changes": {"attached_to": None}}
    )
    assert request.changes.changes() == {"attached_to": None}
    assert validate_patch("volume", request.changes.changes()).changes() == {"attached_to": None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "web-1", "changes": {"vcpus": 4}}, "expected_version"),
        ({"name": "web-1", "expected_version": 0, "changes": {"vcpus": 4}}, "expected_version"),
        ({"name": "web-1", "expected_version": 1, "changes": {}}, "changes"),
        ({"name": "web-1", "expected_version": 1, "changes": {"vcpus": None}}, "changes.vcpus"),
        ({"name": "web-1", "expected_version": 1, "changes": {"kind": "volume"}}, "changes.kind"),
        ({"name": "web-1", "expected_version": 1, "changes": {"id": "x"}}, "changes.id"),
    ],
)
def test_update_request_refuses_bad_patches(body, field):
    assert field in bad_fields(UpdateResourceRequest, body)


def test_patch_for_a_kind_refuses_fields_of_another_kind():
    assert "size_gb" in bad_fields(VmPatch, {"size_gb": 20})
    with pytest.raises(ValidationError):
        validate_patch("vm", {"cidr": "10.1.0.0/16"})


# --- rpc -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (CreateResourceRequest, {"spec": {**VM, "owner": "me"}}, "spec.vm.owner"),
        (CreateResourceRequest, {"spec": VM, "admin": True}, "admin"),
        (ServiceRequest, {"name": "web", "passing": True}, "passing"),
        (PickRequest, {"service": "web", "strategy": "fastest"}, "strategy"),
        (ResourcesRequest, {"limit": 0}, "limit"),
        (ResourcesRequest, {"limit": 501}, "limit"),
        (ResourcesRequest, {"kind": "disk"}, "kind"),
    ],
)
def test_requests_refuse_extra_and_bad_fields(model, body, field):
    assert field in bad_fields(model, body)


def test_request_defaults():
    assert PickRequest.model_validate({"service": "web"}).strategy == "round_robin"
    assert ResourcesRequest.model_validate({}).limit == 100
    assert ServiceRequest.model_validate({"name": "web"}).passing_only is False


def test_every_rpc_method_pairs_a_request_with_a_reply():
    assert set(RPC_CONTRACT) == {
        "discovery.services",
        "discovery.service",
        "discovery.instance",
        "discovery.pick",
        "discovery.state",
        "manager.resources",
        "manager.resource",
        "manager.create",
        "manager.update",
        "manager.delete",
    }
    for request, reply in RPC_CONTRACT.values():
        assert issubclass(request, schemas.Request)
        assert issubclass(reply, BaseModel)


# --- catalog -------------------------------------------------------------------------------------


def test_event_types_cover_the_spec():
    assert set(EVENT_TYPES) == SPEC_EVENT_TYPES
    for type_, model in EVENT_TYPES.items():
        assert type_ == model.TYPE
        assert event_model(type_) is model
    assert event_model("registry.register.v9") is None


def test_every_public_event_class_is_in_the_catalog():
    public_events = {
        obj
        for name in schemas.__all__
        if inspect.isclass(obj := getattr(schemas, name))
        and issubclass(obj, Event)
        and obj is not Event
    }
    assert public_events == set(EVENT_TYPES.values())
