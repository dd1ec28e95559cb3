"""Live detection inside a collector process (`tooltrail serve --hook detect.live:attach`).

The collector's Ingestor calls the engine with every durable batch (and every batch of
quarantined input), on its dispatch thread, so acknowledgements never wait on detection.
The process that runs this owns the alert store and the detector state: run exactly one
such process per data dir (for `serve --workers N` or Kafka scale-out, run the separate
`tooltrail detect --follow` service instead).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from detect.engine import DetectionEngine, Listener
from tooltrail.logs import get_logger

log = get_logger("tooltrail.detect.live")
FLUSH_EVERY_S = 2.0


def attach(ingestor: Any) -> DetectionEngine:
    config = ingestor.config
    engine = DetectionEngine.from_config(config)
    lock = threading.Lock()  # records and quarantine items arrive on different threads
    listener = Listener(engine)

    def on_records(records: list[dict[str, Any]]) -> None:
        with lock:
            listener(records)

    def on_quarantine(items: list[dict[str, Any]]) -> None:
        with lock:
            engine.process_quarantine(items)

    ingestor.add_listener(on_records)
    ingestor.add_quarantine_listener(on_quarantine)
    from detect.delivery import attach as attach_delivery

    dispatcher = attach_delivery(engine.store, config)
    stop = threading.Event()

    def flush_loop() -> None:
        # Status changes made in the dashboard (ack/resolve) reach webhooks even when no
        # events arrive: the store picks them up on flush.
        while not stop.wait(FLUSH_EVERY_S):
            try:
                with lock:
                    engine.store.flush()
            except Exception as exc:
                log.error("alert_flush_failed", error=str(exc)[:300])

    threading.Thread(target=flush_loop, name="alert-flush", daemon=True).start()

    def shutdown() -> None:
        stop.set()
        with lock:
            engine.flush()
            engine.save_state()
        dispatcher.close()

    atexit.register(shutdown)
    log.info("live_detection_attached", chain_id=ingestor.chain_id, rules=len(engine.rules),
             detectors=len(engine.detectors))
    return engine
