"""A detector-like process for the restart test: owns an AlertStore, attaches delivery,
optionally raises the test alert, then runs until killed (SIGTERM: clean close)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from detect.alerts import AlertStore  # noqa: E402
from detect.delivery import attach  # noqa: E402
from tests.delivery.conftest import raise_alert  # noqa: E402
from tooltrail.config import Config  # noqa: E402


def main() -> None:
    cfg = Config.model_validate_json(Path(sys.argv[1]).read_text())
    store = AlertStore(None)
    disp = attach(store, cfg)
    if "--raise" in sys.argv:
        raise_alert(store)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    print("ready", flush=True)
    stop.wait()
    disp.close()


if __name__ == "__main__":
    main()
