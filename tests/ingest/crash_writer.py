"""A writer process for the crash tests: submits batches through the WAL-mode Ingestor and
prints the ids of every batch once `submit` returned (acknowledged), then keeps going until
killed."""

from __future__ import annotations

import sys

from ingest.pipeline import Ingestor
from tests.conftest import make_event
from tooltrail.config import load_config


def main() -> None:
    data_dir, start, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cfg = load_config(data_dir=data_dir, env={})
    cfg.storage.segment_max_seconds = 0.2
    cfg.storage.checkpoint_every_seconds = 0.5
    ing = Ingestor.open(cfg, "crash")
    n = start
    for _ in range(batches):
        events = [make_event(n + i) for i in range(size)]
        res = ing.submit(events, source="crash-test")
        assert res.stored + res.duplicates == size
        sys.stdout.write(" ".join(e["event_id"] for e in events) + "\n")
        sys.stdout.flush()
        n += size
    ing.close()


if __name__ == "__main__":
    main()
