"""Consul's registration body into `registry.register`, and how checkers share checks."""

from __future__ import annotations

import pytest

from health_checker.ring import owner
from http_edge._consul_body import ConsulInvalid, duration_s, register_payload
from schemas import Register


def test_go_camelcase_and_py_consul_lowercase_give_the_same_registration():
    go = {
        "Name": "web", "ID": "web-1", "Address": "10.0.0.5", "Port": 80, "Tags": ["v1"],
        "Meta": {"zone": "a"}, "Weights": {"Passing": 3},
        "Check": {"HTTP": "http://10.0.0.5/health", "Interval": "10s", "Timeout": "1.5s",
                  "DeregisterCriticalServiceAfter": "1m30s",
                  "Header": {"X-Probe": ["a", "b"]}, "TLSSkipVerify": True},
    }  # fmt: skip
    py = {
        "name": "web", "id": "web-1", "address": "10.0.0.5", "port": 80, "tags": ["v1"],
        "meta": {"zone": "a"}, "weights": {"passing": 3},
        "checks": [{"http": "http://10.0.0.5/health", "interval": "10s", "timeout": "1.5s",
                    "DeregisterCriticalServiceAfter": "1m30s",
                    "header": {"X-Probe": ["a", "b"]}, "tls_skip_verify": True}],
    }  # fmt: skip
    a = Register.model_validate(register_payload(go, default_address="127.0.0.1"))
    b = Register.model_validate(register_payload(py, default_address="127.0.0.1"))
    assert a == b
    assert (a.ttl_s, a.deregister_after_s, a.weight) == (0, 90, 3)
    (check,) = a.checks
    assert (check.interval_s, check.timeout_s, check.tls_skip_verify) == (10, 1.5, True)
    assert check.headers == {"X-Probe": "a, b"}


def test_a_ttl_check_is_the_instance_ttl_and_tcp_checks_become_checks():
    body = {
        "Name": "db", "Port": 5432,
        "Checks": [{"TTL": "30s"}, {"TCP": "db:5432", "Interval": "5s", "CheckID": "service:db:2"}],
    }  # fmt: skip
    event = Register.model_validate(register_payload(body, default_address="10.0.0.9"))
    assert (event.instance_id, event.address, event.ttl_s) == ("db", "10.0.0.9", 30)
    assert [(c.id, c.tcp, c.interval_s) for c in event.checks] == [("service-db-2", "db:5432", 5)]
    # As Consul: a TTL check is critical until its first pass (unless `Status` says), and with
    # no DeregisterCriticalServiceAfter a critical one stays (govbus: its longest, 7 days).
    assert (event.status, event.deregister_after_s) == ("critical", 7 * 86_400)


def test_a_ttl_checks_status_and_deregistration_as_given():
    check = {"TTL": "30s", "Status": "passing", "DeregisterCriticalServiceAfter": "5m"}
    body = {"Name": "db", "Port": 1, "Check": check}
    event = Register.model_validate(register_payload(body, default_address="10.0.0.9"))
    assert (event.status, event.deregister_after_s) == ("passing", 300)
    # Without a TTL check nothing is reported at registration: its checks decide.
    plain = Register.model_validate(
        register_payload({"Name": "db", "Port": 1}, default_address="h")
    )
    assert (plain.status, plain.ttl_s, plain.deregister_after_s) == ("passing", 0, 90)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Port": 1}, "Name"),
        ({"Name": "web"}, "Port"),
        ({"Name": "web", "Port": 1, "Check": {"HTTP": "http://x/"}}, "Check.interval"),
        ({"Name": "web", "Port": 1, "Check": {"TCP": "x:1", "Interval": "10 s"}}, "Check.Interval"),
        ({"Name": "web", "Port": 1, "Checks": [{"GRPC": "x:1", "Interval": "1s"}]}, "Checks.0"),
        ({"Name": "web", "Port": 1, "Checks": {"TTL": "1s"}}, "Checks"),
        ({"Name": "web", "Port": 1, "Check": {"TTL": "1s", "Status": "up"}}, "Check.Status"),
        # One TTL an instance: a pass must say which; two are refused, not merged.
        (
            {
                "Name": "web",
                "Port": 1,
                "Check": {"TTL": "60s", "CheckID": "mine"},
                "Checks": [{"CheckID": "other", "TTL": "5s"}],
            },
            "Checks.0",
        ),
    ],
)
def test_what_govbus_cannot_take_names_the_field_as_sent(body, field):
    with pytest.raises(ConsulInvalid) as info:
        register_payload(body, default_address="127.0.0.1")
    assert info.value.field == field


def test_go_durations():
    assert duration_s("1h30m", "x") == 5400
    assert duration_s("500ms", "x") == 0.5
    assert duration_s(7, "x") == 7
    with pytest.raises(ConsulInvalid):
        duration_s("10", "x")


def test_a_checker_leaving_moves_only_its_own_checks():
    keys = [f"i{n}/check-1" for n in range(1000)]
    three = ["a", "b", "c"]
    before = {k: owner(k, three) for k in keys}
    assert set(before.values()) == set(three)
    after = {k: owner(k, ["a", "c"]) for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == "b"}
    assert owner("x", []) is None
