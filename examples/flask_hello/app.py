"""The article's Flask service, now on the bus: `/hello`, `/resource`, `/resource/<name>`.

It registers itself as service `hello` (heartbeating in the background, deregistering at exit
and on SIGTERM) and answers `/resource` by asking the manager worker over the bus instead of
reading SQLite.

    GOVBUS_URL=amqp://guest:guest@127.0.0.1:5672/ flask --app examples/flask_hello/app run
"""

from __future__ import annotations

import os

from flask import Flask, abort, jsonify

from bus.errors import Invalid, NotFound
from bus.flask import GovbusFlask


def create_app(url: str | None = None, port: int | None = None, ttl_s: float = 30.0) -> Flask:
    app = Flask(__name__)
    agent = GovbusFlask(
        app,
        service="hello",
        port=port or int(os.environ.get("PORT", "5000")),
        address="127.0.0.1",
        url=url,
        ttl_s=ttl_s,
    )

    @app.get("/hello")
    def hello() -> str:
        return "Hello World!"

    @app.get("/resource")
    def resources():  # type: ignore[no-untyped-def]
        page = agent.call("manager.resources", {"limit": 100})
        return jsonify(page["items"])

    @app.get("/resource/<name>")
    def resource(name: str):  # type: ignore[no-untyped-def]
        try:
            return jsonify(agent.call("manager.resource", {"name": name}))
        except (NotFound, Invalid):
            abort(404)

    return app


if __name__ == "__main__":
    create_app().run(port=int(os.environ.get("PORT", "5000")))
