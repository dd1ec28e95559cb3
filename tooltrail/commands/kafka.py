"""`tooltrail kafka`: run a Kafka collector (consumer-group member); `tooltrail emit`: produce
tool-call events to the topic, keyed by principal.

    tooltrail kafka --bootstrap kafka:9092 --topic tooltrail.events --group tooltrail-collectors
    tooltrail emit events.jsonl --bootstrap kafka:9092 --topic tooltrail.events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tooltrail.commands.common import config_from_args

EXIT_INVALID = 3


def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (defaults from the [kafka] config section)")
    g.add_argument("--bootstrap", help="HOST:PORT[,HOST:PORT...]")
    g.add_argument("--topic", help="topic (default kafka.topic = tooltrail.events)")
    g.add_argument("--security-protocol", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    g.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    g.add_argument("--sasl-username")
    g.add_argument("--sasl-password-file", metavar="FILE",
                   help="file holding the SASL password (else kafka.sasl_password / TOOLTRAIL_KAFKA__SASL_PASSWORD)")
    g.add_argument("--ssl-cafile", metavar="PEM")
    g.add_argument("--ssl-certfile", metavar="PEM")
    g.add_argument("--ssl-keyfile", metavar="PEM")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kafka", help="consume tool-call events from Kafka in a consumer group (one hash chain per partition)",
        description="Kafka collector: each assigned partition is written to its own hash chain "
                    "(<prefix>-<topic>-p<N>); offsets are committed only after the events are durable. Run several "
                    "with the same --group to scale out. Logs consumer lag per partition every --lag-interval seconds.")
    _connection_args(p)
    p.add_argument("--group", help="consumer group (default kafka.group = tooltrail-collectors)")
    p.add_argument("--source", help="source recorded on stored events (default kafka:<topic>)")
    p.add_argument("--dead-letter-topic", help="also copy rejected messages to this topic")
    p.add_argument("--partitions", type=int, metavar="N", help="create the topic with N partitions if it does not exist")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (0 picks a free one)")
    p.add_argument("--metrics-host", help="metrics bind address (default 127.0.0.1)")
    p.add_argument("--lag-interval", type=float, metavar="S", help="seconds between consumer-lag log lines (default 10)")
    p.add_argument("--max-batch", type=int, metavar="N", help="records per durable batch (default 10000)")
    p.add_argument("--group-instance-id", help="static group membership id (a restart keeps its partitions)")
    p.add_argument("--until-idle", type=float, metavar="S",
                   help="exit once the assigned partitions are drained and nothing arrived for S seconds")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser(
        "emit", help="produce tool-call events (JSONL) to Kafka, keyed by principal (exit 3 when some were invalid)",
        description="Read one JSON event per line and produce it to the topic with acks=all. Events are validated "
                    "first (invalid lines are reported and not sent, unless --raw); a missing event_id is filled in.")
    _connection_args(p)
    p.add_argument("files", nargs="*", help="JSONL files ('-' or nothing: standard input)")
    p.add_argument("--raw", action="store_true", help="send every line unchanged, without validation (testing)")
    p.add_argument("--no-event-id", action="store_true", help="do not add an event_id to events without one")
    p.add_argument("--no-idempotence", action="store_true",
                   help="plain acks=all producer, for brokers without idempotent-producer support")
    p.set_defaults(func=cmd_emit)


def _settings(args: argparse.Namespace) -> tuple[Any, Any]:
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    update: dict[str, Any] = {}
    for flag, name in (("bootstrap", "bootstrap"), ("topic", "topic"), ("group", "group"), ("source", "source"),
                       ("dead_letter_topic", "dead_letter_topic"), ("metrics_port", "metrics_port"),
                       ("metrics_host", "metrics_host"), ("lag_interval", "lag_log_interval_s"), ("max_batch", "max_batch"),
                       ("group_instance_id", "group_instance_id"), ("security_protocol", "security_protocol"),
                       ("sasl_mechanism", "sasl_mechanism"), ("sasl_username", "sasl_username"),
                       ("ssl_cafile", "ssl_cafile"), ("ssl_certfile", "ssl_certfile"), ("ssl_keyfile", "ssl_keyfile")):
        value = getattr(args, flag, None)
        if value is not None:
            update[name] = value
    if getattr(args, "no_idempotence", False):
        update["producer_idempotence"] = False
    if getattr(args, "sasl_password_file", None):
        try:
            update["sasl_password"] = Path(args.sasl_password_file).read_text().strip()
        except OSError as exc:
            raise UserError(f"cannot read --sasl-password-file: {exc.strerror}") from None
    from pydantic import ValidationError

    from ingest.settings import KafkaSettings

    try:
        settings = KafkaSettings.model_validate({**cfg.kafka.model_dump(), **update})
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise UserError(f"kafka settings: {errs}") from None
    return cfg, settings


def _json_stdlib_logs(level: str) -> None:
    """aiokafka logs through the stdlib; keep every line on stderr structured JSON."""
    from tooltrail.logs import get_logger

    class _Bridge(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                msg = record.getMessage()
            except Exception:
                msg = str(record.msg)
            get_logger(record.name).log(record.levelno, "library_log", message=msg[:500])

    lib = logging.getLogger("aiokafka")
    lib.handlers[:] = [_Bridge()]
    lib.propagate = False
    lib.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def cmd_kafka(args: argparse.Namespace) -> int:
    from ingest.kafka import CollectorFatal, KafkaCollector, KafkaConfigError, ensure_topic
    from tooltrail.cli import UserError
    from tooltrail.logs import get_logger

    cfg, settings = _settings(args)
    _json_stdlib_logs(getattr(args, "log_level", "info"))
    collector = KafkaCollector(cfg, settings)

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, collector.request_stop)
        if args.partitions:
            created = await ensure_topic(settings, args.partitions)
            get_logger("tooltrail.kafka").info("kafka_topic", topic=settings.topic, created=created,
                                                partitions=args.partitions)
        await collector.run(until_idle_s=args.until_idle)

    try:
        asyncio.run(_main())
    except KafkaConfigError as exc:
        raise UserError(str(exc)) from None
    except CollectorFatal as exc:
        get_logger("tooltrail.kafka").error("kafka_collector_fatal", error=str(exc)[:300])
        return 1
    print(json.dumps({k: v for k, v in collector.stats.as_dict().items() if not k.endswith("_at")}))
    return 0


def _lines(files: list[str]) -> Iterator[tuple[str, int, bytes]]:
    for f in files or ["-"]:
        fh: IO[bytes] = sys.stdin.buffer if f == "-" else open(f, "rb")  # noqa: SIM115
        try:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if line:
                    yield ("stdin" if f == "-" else f), lineno, line
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()


def cmd_emit(args: argparse.Namespace) -> int:
    import orjson
    from pydantic import ValidationError

    from ingest.kafka import EventProducer, KafkaConfigError
    from schemas.event import ToolCallEvent
    from tooltrail.cli import UserError

    _cfg, settings = _settings(args)
    _json_stdlib_logs(getattr(args, "log_level", "info"))
    for f in args.files:
        if f != "-" and not Path(f).exists():
            raise UserError(f"no such file: {f}")
    invalid = 0

    async def _main() -> int:
        nonlocal invalid
        async with EventProducer(settings, add_event_id=not args.no_event_id) as producer:
            for name, lineno, line in _lines(args.files):
                if not args.raw:
                    try:
                        obj = orjson.loads(line)
                        ToolCallEvent.model_validate(obj)
                    except orjson.JSONDecodeError as exc:
                        invalid += 1
                        print(f"{name}:{lineno}: invalid JSON: {exc}", file=sys.stderr)
                        continue
                    except ValidationError as exc:
                        invalid += 1
                        for e in exc.errors(include_input=False, include_url=False):
                            print(f"{name}:{lineno}: {'.'.join(map(str, e['loc'])) or '(event)'}: {e['msg']}",
                                  file=sys.stderr)
                        continue
                await producer.send(line)
            await producer.flush()
            return producer.sent

    try:
        sent = asyncio.run(_main())
    except KafkaConfigError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps({"sent": sent, "invalid": invalid, "topic": settings.topic}))
    return EXIT_INVALID if invalid else 0
