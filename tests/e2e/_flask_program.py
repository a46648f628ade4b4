"""The example Flask app as a process whose host app installed its own SIGTERM handler first.

    python -m tests.e2e._flask_program PORT      (GOVBUS_URL names the bus)

The handler prints `app handler ran` and exits 3: the extension must still let it run.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from examples.flask_hello.app import create_app


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    print("app handler ran", flush=True)
    sys.exit(3)


def main() -> None:
    port = int(sys.argv[1])
    signal.signal(signal.SIGTERM, _on_sigterm)
    create_app(port=port).run(port=port)


if __name__ == "__main__":
    main()
