"""provisioner as a real server (uvicorn in a thread on 127.0.0.1), for browsers and OIDC.

The OpenID provider redirects a real browser to the app, so the ASGI transport is not
enough here: the app must listen on a port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from provisioner.app import create_app
from provisioner.settings import Settings


@contextmanager
def serve_app(settings: Settings, *, port: int, startup_seconds: float = 20.0) -> Iterator[str]:
    """Serve `create_app(settings)` until the block ends; yields the base URL."""
    app = create_app(settings, run_worker=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="provisioner-e2e", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_seconds
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the app server stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("the app server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
