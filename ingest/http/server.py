"""Running the collector under uvicorn: one process (default) or N worker processes that
share the listening socket, each owning its own chain (`<chain>-0`, `<chain>-1`, ...: one
writer per chain, claimed through the chain lock). Graceful shutdown (SIGTERM/SIGINT) lets
in-flight requests finish, then closes the Ingestor (seal, sign a checkpoint, unlock).

Startup hooks are given as "module:function" strings so they survive the worker spawn; each
is called with the worker's Ingestor (use `ingestor.add_listener(fn)` for live detection).
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from tooltrail.logs import StderrHandler, configure_logging, get_logger

log = get_logger("tooltrail.http")
ENV_PREFIX = "_TOOLTRAIL_SERVE_"  # not TOOLTRAIL_*: the config loader must not read these


class JsonLogFormatter(logging.Formatter):
    """uvicorn's own log records as JSON lines, like every other ToolTrail log line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"event": record.getMessage(), "logger": record.name, "level": record.levelname.lower(),
               "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"}
        if record.exc_info:
            out["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(out)


def configure_server_logging(level: str = "info") -> None:
    configure_logging(level)
    handler = StderrHandler()
    handler.setFormatter(JsonLogFormatter())
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler] if name == "uvicorn" else []
        lg.propagate = name != "uvicorn"
        lg.setLevel(getattr(logging, level.upper(), logging.INFO))
    access = logging.getLogger("uvicorn.access")  # ToolTrail's own access log (http.access_log) replaces it
    access.handlers, access.propagate, access.disabled = [], False, True


def load_hook(spec: str) -> Callable[[Any], None]:
    mod, _, attr = spec.partition(":")
    if not mod or not attr:
        raise ValueError(f"hook {spec!r} must look like 'package.module:function'")
    fn = getattr(importlib.import_module(mod), attr)
    if not callable(fn):
        raise ValueError(f"hook {spec!r} is not callable")
    return fn


def uvicorn_config(app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "info",
                   request_timeout_s: float = 30.0, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level=log_level, access_log=False, server_header=False,
        lifespan="on", loop="auto", http="auto", ws="none", proxy_headers=False, timeout_keep_alive=30,
        timeout_graceful_shutdown=max(5, int(request_timeout_s) + 5), h11_max_incomplete_event_size=64 * 1024, **kw)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ThreadedServer:
    """A real uvicorn server on a loopback port in a background thread (tests, embedding)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> None:
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, host=host, port=self.port, **kw))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name=f"uvicorn-{self.port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: Any, *, host: str | None = None, port: int | None = None, chain: str | None = None,
          workers: int | None = None, hooks: Sequence[str] = (), log_level: str = "info",
          config_path: str | None = None) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit code."""
    s = config.http
    host = host or s.host
    port = s.port if port is None else port
    chain = chain or s.chain
    workers = workers or s.workers
    configure_server_logging(log_level)
    if not _is_loopback(host):
        log.warning("listening_beyond_loopback", host=host, hint="no TLS here: put a TLS-terminating proxy in front")
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    if workers <= 1:
        from ingest.http.app import create_app
        from ingest.pipeline import Ingestor

        ingestor = Ingestor.open(config, chain)  # fails fast (ChainBusyError) before anything listens
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these handlers in
        # place that re-raise only lands here, so the Ingestor below is closed and we exit 0.
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            app = create_app(config, ingestor=ingestor, on_startup=[load_hook(h) for h in hooks])
            server = uvicorn.Server(uvicorn_config(app, host=host, port=actual, log_level=log_level,
                                                   request_timeout_s=s.request_timeout_s))
            log.info("listening", host=host, port=actual, chain_id=chain, workers=1)
            server.run(sockets=[sock])
        finally:
            ingestor.close()  # after uvicorn drained in-flight requests: seal, sign, unlock
            log.info("ingestor_closed", chain_id=chain)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0 if server.started else 1
    from uvicorn.supervisors import Multiprocess

    os.environ[ENV_PREFIX + "SPEC"] = json.dumps({
        "config_path": config_path, "data_dir": config.data_dir, "chain": chain, "workers": workers,
        "hooks": list(hooks), "log_level": log_level})
    ucfg = uvicorn_config("ingest.http.server:worker_app", host=host, port=actual, log_level=log_level,
                          request_timeout_s=s.request_timeout_s, factory=True, workers=workers)
    log.info("listening", host=host, port=actual, chains=[f"{chain}-{i}" for i in range(workers)], workers=workers)
    Multiprocess(ucfg, sockets=[sock]).run()
    return 0


def worker_app() -> Any:
    """App factory run inside each worker process (`serve(workers=N)`)."""
    from ingest.http.app import create_app
    from ingest.runtime import tune_gc
    from tooltrail.config import load_config

    tune_gc()  # a spawned worker does not run the CLI's main()
    spec = json.loads(os.environ[ENV_PREFIX + "SPEC"])
    configure_server_logging(spec["log_level"])
    config = load_config(spec["config_path"], data_dir=spec["data_dir"])
    candidates = [f"{spec['chain']}-{i}" for i in range(spec["workers"])]
    return create_app(config, chain_candidates=candidates, on_startup=[load_hook(h) for h in spec["hooks"]])
