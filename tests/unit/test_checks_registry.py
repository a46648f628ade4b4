"""Active checks in the registry's logic, their validation, and expiry protection that ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bus.validation import field_errors
from discovery_worker._time import to_us
from discovery_worker.registry import Registry
from schemas import CheckResult, Heartbeat, Register

T0 = to_us(datetime(2026, 1, 1, tzinfo=UTC))
S = 1_000_000
BASE = {"service": "db", "instance_id": "db-1", "address": "10.0.0.1", "port": 5432}


def register(reg: Registry, iid: str = "db-1", at: float = 0, **kw) -> list:
    kw = {**BASE, "instance_id": iid, "ttl_s": 0, **kw}
    return reg.register(Register(**kw), f"reg-{iid}-{at}", T0 + int(at * S))


def result(
    reg: Registry, status: str, at: float, iid: str = "db-1", check: str = "check-1", output=""
):
    event = CheckResult(service="db", instance_id=iid, check_id=check, status=status, output=output)
    return reg.check(event, f"chk-{iid}-{check}-{at}", T0 + int(at * S))


def beat(reg: Registry, iid: str, at: float, service: str = "db") -> list:
    event = Heartbeat(service=service, instance_id=iid)
    return reg.heartbeat(event, f"hb-{iid}-{at}", T0 + int(at * S))


def changes(derived) -> list[tuple]:
    return [
        (d.event.previous, d.event.status, d.event.reason, d.event.check_id, d.event.output)
        for d in derived
        if d.event.TYPE == "registry.instance.status_changed"
    ]


def of(derived, type_: str) -> list:
    return [d.event for d in derived if type_ == d.event.TYPE]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"http": "not a url"}, "checks.0.http"),
        ({"http": "ftp://db:21/"}, "checks.0.http"),
        ({"http": "http://db:70000/health"}, "checks.0.http"),
        ({"http": "http:///health"}, "checks.0.http"),
        ({"tcp": "db:0"}, "checks.0.tcp"),
        ({"tcp": "db:65536"}, "checks.0.tcp"),
        ({"tcp": "db"}, "checks.0.tcp"),
        ({"tcp": "::1:80"}, "checks.0.tcp"),
        ({"tcp": "db:5432", "interval_s": 0.5}, "checks.0.interval_s"),
        ({"tcp": "db:5432", "interval_s": 3601}, "checks.0.interval_s"),
        ({"tcp": "db:5432", "timeout_s": 0}, "checks.0.timeout_s"),
        ({"tcp": "db:5432", "failures_before_critical": 0}, "checks.0.failures_before_critical"),
        ({"http": "http://db/", "method": "BREW"}, "checks.0.method"),
        ({"http": "http://db/", "headers": {"X-A": "b\r\nX-Evil: 1"}}, "checks.0.headers"),
        ({}, "checks.0"),
        ({"http": "http://db/", "tcp": "db:1"}, "checks.0"),
    ],
)
def test_a_bad_check_is_refused_naming_its_field(check, field):
    with pytest.raises(ValidationError) as info:
        Register(**BASE, checks=[check])
    assert field in {e["field"] for e in field_errors(info.value)}


def test_checks_get_ids_defaults_and_refuse_duplicates():
    event = Register(**BASE, checks=[{"http": "http://db:8080/health"}, {"tcp": "[::1]:5432"}])
    assert [c.id for c in event.checks] == ["check-1", "check-2"]
    first = event.checks[0]
    assert (first.interval_s, first.timeout_s, first.method) == (10, 2, "GET")
    assert (first.failures_before_critical, first.successes_before_passing) == (1, 1)
    with pytest.raises(ValidationError) as info:
        Register(**BASE, checks=[{"id": "a", "tcp": "db:1"}, {"id": "a", "tcp": "db:2"}])
    assert "two checks have the id 'a'" in str(info.value)
    assert Register(**BASE, ttl_s=0).ttl_s == 0


# --- status from checks ---------------------------------------------------------------------


def test_a_checked_instance_starts_critical_and_each_verdict_says_why():
    reg = Registry()
    out = register(reg, checks=[{"http": "http://10.0.0.1:8080/health"}])
    assert changes(out) == [(None, "critical", "registered", None, "")]
    assert changes(result(reg, "passing", 1, output="HTTP 200 OK")) == [
        ("critical", "passing", "check_passed", "check-1", "HTTP 200 OK")
    ]
    assert changes(result(reg, "warning", 2, output="HTTP 429")) == [
        ("passing", "warning", "check_warning", "check-1", "HTTP 429")
    ]
    assert changes(result(reg, "critical", 3, output="connection refused")) == [
        ("warning", "critical", "check_failed", "check-1", "connection refused")
    ]
    state = reg.instances["db-1"].checks["check-1"]
    assert (state.status, state.output) == ("critical", "connection refused")
    # The same verdict again, an older one, or one for an unknown check: no effect.
    assert result(reg, "critical", 4, output="connection refused") == []
    assert result(reg, "passing", 2.5) == []
    assert result(reg, "passing", 5, check="nope") == []
    assert reg.instances["db-1"].status == "critical"


def test_status_is_the_worst_of_ttl_and_checks():
    reg = Registry()
    register(reg, ttl_s=10, deregister_after_s=600, checks=[{"tcp": "10.0.0.1:5432"}])
    result(reg, "passing", 1)
    assert reg.instances["db-1"].status == "passing"
    # Heartbeats stop: the TTL makes it critical although its check passes.
    out = reg.advance(T0 + 10 * S)
    assert changes(out) == [("passing", "critical", "heartbeat_missed", None, "")]
    # The check turning warning changes nothing visible: critical is worse.
    assert changes(result(reg, "warning", 12)) == []
    # A heartbeat brings it back as far as its check allows: warning.
    assert changes(beat(reg, "db-1", 13)) == [("critical", "warning", "recovered", None, "")]
    assert changes(result(reg, "passing", 14)) == [
        ("warning", "passing", "check_passed", "check-1", "")
    ]


def test_ttl_zero_means_checks_alone_decide():
    reg = Registry()
    register(reg, ttl_s=0, checks=[{"tcp": "10.0.0.1:5432"}])
    result(reg, "passing", 1)
    assert reg.next_due() is None or reg.next_due() > T0 + 10**6 * S
    assert reg.advance(T0 + 86_400 * S) == []
    assert reg.instances["db-1"].status == "passing"


def test_reregistration_keeps_what_is_known_of_an_unchanged_check():
    reg = Registry()
    checks = [{"id": "h", "http": "http://10.0.0.1/health"}]
    register(reg, checks=checks)
    result(reg, "passing", 1, check="h")
    register(reg, at=2, checks=checks, tags=["v2"])
    assert reg.instances["db-1"].status == "passing"
    register(reg, at=3, checks=[{"id": "h", "http": "http://10.0.0.1/ready"}])
    assert reg.instances["db-1"].status == "critical"  # a new check starts critical


# --- protection that ends -------------------------------------------------------------------


def _fleet(reg: Registry, n: int) -> None:
    for i in range(n):
        register(reg, f"i{i}", ttl_s=10, deregister_after_s=20)


def test_protection_ends_when_the_rest_keeps_beating_and_the_silent_expire():
    reg = Registry()
    _fleet(reg, 10)
    derived = []
    for t in range(1, 200):
        for i in range(7, 10):  # 3 keep beating; 7 fall silent at once
            derived += beat(reg, f"i{i}", t)
        derived += reg.advance(T0 + t * S)
    entered = of(derived, "registry.protection.entered")
    exited = of(derived, "registry.protection.exited")
    assert len(entered) == 1 and len(exited) == 1
    assert exited[0].reason == "others_beating"
    exit_time = next(d.time_us for d in derived if d.event.TYPE == "registry.protection.exited")
    assert exit_time == T0 + (10 + 5 * 10) * S  # five TTLs after it started at 10 s
    expired = of(derived, "registry.instance.expired")
    assert sorted(e.instance_id for e in expired) == [f"i{i}" for i in range(7)]
    assert {e.reason for e in expired} == {"protection_ended"}
    assert sorted(reg.instances) == ["i7", "i8", "i9"] and not reg.protection


def test_protection_with_no_evidence_ends_at_its_time_limit():
    reg = Registry(max_protection_s=120)
    _fleet(reg, 10)  # everyone falls silent: the bus itself may be at fault
    out = reg.advance(T0 + 119 * S)
    assert reg.protection and len(reg.instances) == 10
    out = reg.advance(T0 + 10 * S + 120 * S)
    exited = of(out, "registry.protection.exited")
    assert [e.reason for e in exited] == ["time_limit"]
    out = reg.advance(T0 + 10 * S + 120 * S + 10 * S)
    assert len(of(out, "registry.instance.expired")) == 10 and not reg.instances


def _restored(reg: Registry, **state) -> Registry:
    """A registry restored from `reg`'s entries, as the journal would after a restart."""
    again = Registry(max_protection_s=120)
    entries = list(reg.instances.values())
    again.load(entries, index=reg.index, protection=True, protection_exited_us=0,
               placements={}, **state)  # fmt: skip
    return again


def test_a_restart_during_protection_keeps_its_deadline():
    reg = Registry(max_protection_s=120)
    _fleet(reg, 10)
    reg.advance(T0 + 30 * S)
    assert reg.protection
    since = reg.protection_since_us
    again = _restored(reg, protection_since_us=since, protection_ttl_us=reg.protection_ttl_us)
    out = again.advance(since + 120 * S)
    assert [e.reason for e in of(out, "registry.protection.exited")] == ["time_limit"]


def test_protection_saved_without_a_start_ends_instead_of_spinning():
    reg = Registry(max_protection_s=120)
    _fleet(reg, 10)
    reg.advance(T0 + 30 * S)
    again = _restored(reg)  # no protection_since_us / protection_ttl_us: an older store
    out = again.advance(T0 + 10 * S + 120 * S)  # the latest miss (10 s) + protection_max_s
    assert [e.reason for e in of(out, "registry.protection.exited")] == ["time_limit"]
