"""The dashboard (`/ui/`) in a real browser: Debian's Chromium (`/usr/bin/chromium`, installed
by `scripts/ensure-services.sh`) driven by Playwright, against `govbus up` on the embedded bus
and on RabbitMQ.

What an operator does: signs in once with a token, sees a registered instance, sees a new one
appear and a status change with its reason without reloading, moves the time slider back and
sees an instance that has been deregistered since. No JavaScript error on the way; the token
never in a URL; a screenshot in tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests._wait import eventually
from tests.e2e._up import free_port, start_up, wait_ready

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SECRET = "dashboard-secret-" + "d" * 32
WAIT_MS = 15_000


def chromium() -> str:
    """Debian's Chromium; its absence is a failure saying how to get it, never a skip."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/ensure-services.sh` (as root it installs "
            "Debian's chromium package) or `apt-get install chromium`"
        )
    return CHROMIUM


@dataclass
class Up:
    """`govbus up` as a process, and an HTTP client with its admin token."""

    url: str
    token: str
    http: httpx.AsyncClient
    proc: subprocess.Popen[str]

    async def register(self, service: str, instance_id: str, **extra: object) -> None:
        body = {"service": service, "instance_id": instance_id, "address": "10.0.0.7", "port": 8080}
        r = await self.http.post("/v1/instances", json={**body, **extra})
        assert r.status_code == 202, r.text

    async def listed(self, service: str) -> list[str]:
        r = await self.http.get(f"/v1/services/{service}")
        return [i["instance_id"] for i in r.json()["instances"]] if r.status_code == 200 else []


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def up(request, tmp_path) -> AsyncIterator[Up]:
    """`govbus up` on the embedded bus, or on RabbitMQ (a vhost of its own)."""
    chromium()
    port = free_port()
    if request.param == "memory":
        async with _up(tmp_path, port) as running:
            yield running
        return
    url = request.getfixturevalue("vhost_url")
    async with _up(tmp_path, port, GOVBUS_URL=url) as running:
        yield running


class _up:
    def __init__(self, cwd: Path, port: int, **env: str) -> None:
        self.cwd, self.port, self.env = cwd, port, env

    async def __aenter__(self) -> Up:
        self.proc = start_up(self.cwd, self.port, GOVBUS_AUTH_SECRET=SECRET, **self.env)
        await asyncio.to_thread(wait_ready, self.proc, self.port)
        token = (self.cwd / "govbus.token").read_text().strip()
        url = f"http://127.0.0.1:{self.port}"
        http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"})
        self.up = Up(url, token, http, self.proc)
        return self.up

    async def __aexit__(self, *exc: object) -> None:
        await self.up.http.aclose()
        self.proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(self.proc.communicate, timeout=20)
        assert self.proc.returncode == 0, err
        # `govbus up` tells where the dashboard is.
        assert f"dashboard: http://127.0.0.1:{self.port}/ui/" in out


@dataclass
class Browsing:
    page: Page
    errors: list[str]
    urls: list[str]


async def browse(browser: Browser) -> Browsing:
    """A page that records every JavaScript error and every URL it asks for."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    seen = Browsing(page, [], [])
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(f"pageerror: {exc}"))
    page.on("request", lambda r: seen.urls.append(r.url))
    # A failed load is logged as a console error without its URL: note which it was.
    page.on(
        "response",
        lambda r: seen.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
    )
    return seen


def instance_row(page: Page, instance_id: str):
    return page.locator(f'#instances tr[data-instance="{instance_id}"]')


async def sign_in(page: Page, up: Up) -> None:
    await page.goto(f"{up.url}/ui/")
    await expect(page.locator("#sign-in")).to_be_visible(timeout=WAIT_MS)
    await page.fill("#token", up.token)
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#main")).to_be_visible(timeout=WAIT_MS)


async def test_the_dashboard_shows_the_registry_live_and_in_the_past(up: Up):
    await up.register("web", "web-1", ttl_s=300)
    await up.register("host", "host-1", ttl_s=300)
    spec = {"kind": "vm", "name": "vm-1", "vcpus": 2, "memory_mb": 2048, "image": "debian-12"}
    r = await up.http.post(
        "/v1/resources", json={"kind": "network", "name": "net-1", "cidr": "10.1.0.0/24"}
    )
    assert r.status_code == 201, r.text

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            seen = await browse(browser)
            page = seen.page
            await sign_in(page, up)

            # A registered instance (the first service is picked; choose `web`).
            await page.locator('#services tr[data-service="web"]').click()
            await expect(instance_row(page, "web-1")).to_be_visible(timeout=WAIT_MS)
            await expect(instance_row(page, "web-1").locator(".reason")).to_have_text("registered")

            # A new instance appears without a reload.
            await up.register("web", "web-2", ttl_s=300)
            await expect(instance_row(page, "web-2")).to_be_visible(timeout=WAIT_MS)

            # A status change shows its reason.
            r = await up.http.put("/v1/instances/web-1/heartbeat", json={"status": "warning"})
            assert r.status_code == 202, r.text
            row = instance_row(page, "web-1")
            await expect(row.locator(".status")).to_have_text("warning", timeout=WAIT_MS)
            await expect(row.locator(".reason")).to_have_text("reported")
            await expect(page.locator('#services tr[data-service="web"] td').nth(3)).to_have_text(
                "1"
            )

            # A VM placed on the host, and the network: resources by kind and status, with host.
            r = await up.http.post("/v1/resources", json=spec)
            assert r.status_code == 201, r.text
            vm = page.locator('#resources tr[data-resource="vm-1"]')
            await expect(vm).to_contain_text("host-1", timeout=WAIT_MS)
            await expect(page.locator('#resources tr[data-resource="net-1"]')).to_be_visible()

            # The live event stream, filterable by type.
            events = page.locator("#events li")
            await expect(
                events.filter(has_text="registry.instance.status_changed")
            ).not_to_have_count(0, timeout=WAIT_MS)
            await page.fill("#event-filter", "resource.*")
            await expect(events.filter(has_text="registry.")).to_have_count(0)
            r = await up.http.put("/v1/instances/web-2/heartbeat", json={})  # one it hides...
            assert r.status_code == 202, r.text
            r = await up.http.patch("/v1/resources/vm-1", json={"vcpus": 4})  # ...and one it shows
            assert r.status_code == 200, r.text
            updated = page.locator('#events li[data-type="resource.updated"]')
            await expect(updated).to_have_count(1, timeout=WAIT_MS)
            newest = page.locator("#events li").first
            await expect(newest).to_have_attribute("data-type", "resource.updated")
            await page.fill("#event-filter", "")  # all again: the hidden heartbeat was received
            beats = page.locator('#events li[data-type="registry.heartbeat"]', has_text="web-2")
            await expect(beats).to_have_count(1)

            # A moment at which web-2 was registered, then web-2 leaves.
            moment = math.ceil(time.time())
            await eventually(lambda: time.time() > moment + 0.05, timeout=3, what="a new second")
            r = await up.http.delete("/v1/instances/web-2")
            assert r.status_code == 202, r.text
            await expect(instance_row(page, "web-2")).to_have_count(0, timeout=WAIT_MS)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)

            # The slider shows the registry at that moment: web-2 was there.
            slider = page.locator("#slider")
            await expect(slider).to_be_enabled(timeout=WAIT_MS)
            # Its right end is "now", moved on every second: wait until it is past the moment.
            await page.wait_for_function(
                "m => Number(document.getElementById('slider').max) > m", arg=moment
            )
            await slider.evaluate(
                "(s, v) => { s.value = String(v); s.dispatchEvent(new Event('change')); }", moment
            )
            await expect(page.locator("#mode")).to_contain_text("history", timeout=WAIT_MS)
            await expect(instance_row(page, "web-2")).to_be_visible(timeout=WAIT_MS)
            await expect(instance_row(page, "web-1")).to_be_visible()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # Back to live: web-2 is gone again.
            await page.click("#go-live")
            await expect(page.locator("#mode")).to_have_text("live", timeout=WAIT_MS)
            await expect(instance_row(page, "web-2")).to_have_count(0, timeout=WAIT_MS)

            assert seen.errors == []
            assert not [u for u in seen.urls if up.token in u], "the token went into a URL"
        finally:
            await browser.close()


async def test_the_token_is_kept_in_an_httponly_samesite_cookie(tmp_path):
    port = free_port()
    async with _up(tmp_path, port) as running:
        await running.register("web", "web-1")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                seen = await browse(browser)
                await sign_in(seen.page, running)
                cookies = await seen.page.context.cookies()
                (cookie,) = [c for c in cookies if c["name"] == "govbus_session"]
                assert cookie["httpOnly"] is True
                assert cookie["sameSite"] == "Strict"
                assert cookie["expires"] == -1  # a session cookie: gone with the browser session
                # Scripts cannot read it.
                assert await seen.page.evaluate("document.cookie") == ""
                # Reloading keeps the session: no second sign-in.
                await seen.page.reload()
                await expect(seen.page.locator("#main")).to_be_visible(timeout=WAIT_MS)
                await expect(seen.page.locator("#sign-in")).to_be_hidden()
                # Signing out forgets it.
                await seen.page.click("#sign-out")
                await expect(seen.page.locator("#sign-in")).to_be_visible(timeout=WAIT_MS)
                assert [
                    c for c in await seen.page.context.cookies() if c["name"] == "govbus_session"
                ] == []
                # A bad token is refused with the edge's reason.
                await seen.page.fill("#token", "not-a-token")
                await seen.page.click("#sign-in-form button[type=submit]")
                await expect(seen.page.locator("#sign-in-error")).to_contain_text("invalid token")
                assert [e for e in seen.errors if "401" not in e] == []
                assert not [u for u in seen.urls if running.token in u]
            finally:
                await browser.close()


async def test_without_auth_there_is_no_sign_in(tmp_path):
    port = free_port()
    proc = start_up(tmp_path, port, GOVBUS_AUTH="disabled")
    try:
        await asyncio.to_thread(wait_ready, proc, port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            body = {"service": "open", "instance_id": "open-1", "address": "10.0.0.8", "port": 80}
            assert (await http.post("/v1/instances", json=body)).status_code == 202
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                seen = await browse(browser)
                await seen.page.goto(f"http://127.0.0.1:{port}/ui/")
                # govbus up's own health checker is a service too (govbus-checker): pick ours
                await seen.page.locator('#services tr[data-service="open"]').click()
                await expect(instance_row(seen.page, "open-1")).to_be_visible(timeout=WAIT_MS)
                await expect(seen.page.locator("#sign-in")).to_be_hidden()
                await expect(seen.page.locator("#sign-out")).to_be_hidden()
                assert seen.errors == []
            finally:
                await browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(proc.communicate, timeout=20)
    assert proc.returncode == 0
