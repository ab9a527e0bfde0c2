"""`warden serve`: Warden under gunicorn, threaded workers (measured best here for proxying) whose event
loop reads each request before a thread takes it (`proxy/worker.py`)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from proxy.settings import Settings
from proxy.worker import ClientLimits, WardenWorker

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("warden")


class WardenServer(BaseApplication):
    """Gunicorn with Warden's settings; the app is built in each worker, after the fork."""

    def __init__(
        self,
        settings: Settings,
        *,
        app_factory: Callable[[Settings], Flask],
        host: str,
        port: int,
        workers: int,
        threads: int,
    ) -> None:
        self.settings = settings
        self.app_factory = app_factory
        server = settings.server
        # Read by WardenWorker in each worker process.
        self.client_limits = ClientLimits(
            header_timeout_s=server.header_timeout_s,
            client_timeout_s=server.client_timeout_s,
            max_body_bytes=server.max_body_bytes,
        )
        self.options = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": workers,
            "worker_class": WardenWorker if server.worker == "buffered" else "gthread",
            # A long stream occupies a thread; N concurrent streams need N threads.
            "threads": threads,
            # Open connections per worker, kept-alive and still arriving ones included; past it the
            # worker stops accepting until some close.
            "worker_connections": server.max_connections,
            "timeout": 120,
            "graceful_timeout": 30,
            "keepalive": 75,
            "preload_app": False,  # chDB must never be opened before a fork
            "worker_exit": _close_services,
            "post_worker_init": _worker_ready,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "warden",
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 27 opens a control socket under $HOME, shared by every instance of the
            # user; Warden does not use it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        return self.app_factory(self.settings)


def _worker_ready(worker: Any) -> None:
    _freeze_startup_heap()
    _start_services(worker)


def _freeze_startup_heap() -> None:
    """Move what the worker built at start (modules, the app, compiled policies) out of the garbage
    collector's reach. A full collection walked all of it, 20-100 ms with the worker's GIL held,
    and the requests waiting on it made the p99 latency (issue 16); none of it ever becomes garbage."""
    gc.collect()
    gc.freeze()


def _start_services(worker: Any) -> None:
    """Start the event writer as soon as a worker runs: it replays spool segments that killed
    processes left behind without waiting for the first request."""
    services = getattr(worker.wsgi, "extensions", {}).get("warden")
    start = getattr(getattr(services, "sink", None), "start", None)
    if callable(start):
        start()


def _close_services(server: Any, worker: Any) -> None:
    """Flush queued events before a worker exits (SIGTERM, max-requests, reload)."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("warden") if app is not None else None
    if services is not None:
        services.close()
