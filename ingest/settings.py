"""Configuration of the write path: segments, checkpoints, redaction, collectors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    segment_max_rows: int = Field(100_000, ge=1, le=10_000_000, description="Rows per segment before it is sealed.")
    segment_max_seconds: float = Field(1.0, gt=0, le=3600,
                                       description="Seal the open segment after this long (bounds query freshness).")
    checkpoint_every_events: int = Field(10_000, ge=1, description="Sign a checkpoint at least every N events.")
    checkpoint_every_seconds: float = Field(10.0, gt=0, description="... or every T seconds when events arrived.")
    checkpoint_export: str | None = Field(
        None, description="Directory (or http(s) URL) that receives a copy of every signed checkpoint.")
    signing_key_file: str | None = Field(
        None, description="Ed25519 private key (PEM); default <data>/keys/signing.key, generated 0600 on first run.")
    compact_min_segments: int = Field(16, ge=2, description="Compaction merges runs of at least this many small segments.")
    compact_target_rows: int = Field(1_000_000, ge=1000)


class RedactionRule(_Section):
    """A user-supplied secret pattern (see docs/readme/redaction.md)."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,48}$", description="Marker type, e.g. acme_api_key.")
    regex: str = Field(min_length=1, max_length=4096, description=(
        "RE2 syntax (linear time; no look-around or back-references). The secret is the group named "
        "`secret`, else group 1, else the whole match."))
    keywords: list[str] = Field(default_factory=list, description=(
        "Only apply the rule when one of these words (case-insensitive) occurs in the same text / event."))
    entropy: float | None = Field(None, ge=0, le=8, description="Minimum Shannon entropy (bits/char) of the secret.")

    @field_validator("regex")
    @classmethod
    def _re2_compiles(cls, v: str) -> str:
        from ingest.redact_patterns import compile_re2

        try:
            rx = compile_re2(v)
        except Exception as e:  # re2.error
            raise ValueError(f"not a valid RE2 pattern: {e}") from None
        if rx.fullmatch("") is not None:
            raise ValueError("pattern matches the empty string")
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords_nonempty(cls, v: list[str]) -> list[str]:
        if any(not k.strip() for k in v):
            raise ValueError("keywords must be non-empty strings")
        return v


class RedactionSettings(_Section):
    key_file: str | None = Field(None, description=(
        "HMAC key for marker fingerprints (32 raw bytes or hex); default <data>/keys/redaction.key, "
        "created 0600 on first run. A supplied file readable by group/others is refused."))
    rules: list[RedactionRule] = Field(default_factory=list, description="Extra patterns.")
    allowlist: list[str] = Field(default_factory=list, description="Values never redacted (exact match).")
    secret_keys: list[str] = Field(default_factory=list, description=(
        "Extra key names whose string values are always redacted (case- and separator-insensitive)."))
    safe_keys: list[str] = Field(default_factory=list, description=(
        "Key names never treated as secret by name; their values are still scanned for token formats."))
    disabled_types: list[str] = Field(default_factory=list, description="Built-in types to switch off, e.g. card_number.")
    fingerprint_chars: int = Field(12, ge=8, le=64, description="Hex characters of the HMAC kept in a marker.")
    entropy_threshold: float = Field(3.0, ge=2.0, le=6.0, description=(
        "Minimum Shannon entropy (bits/char) of the high-entropy fallback next to credential words."))

    @field_validator("disabled_types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        from ingest.redact_patterns import BUILTIN_TYPES

        unknown = sorted(set(v) - set(BUILTIN_TYPES))
        if unknown:
            raise ValueError(f"unknown redaction types {unknown}; known: {', '.join(BUILTIN_TYPES)}")
        return v


class HttpSettings(_Section):
    """`tooltrail serve`: the HTTP collector and read API (ingest/http/)."""

    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise (no TLS: put a proxy in front).")
    port: int = Field(8080, ge=0, le=65535)
    chain: str = Field("http", pattern=r"^[A-Za-z0-9._-]{1,120}$",
                       description="Hash chain the collector writes; with workers > 1, worker i owns '<chain>-<i>'.")
    workers: int = Field(1, ge=1, le=64, description="Collector processes; each owns its own chain (one writer per chain).")
    api_keys: dict[str, str] = Field(default_factory=dict,
                                     description="source -> token (ingest). Prefer `tooltrail keys create`.")
    read_keys: dict[str, str] = Field(default_factory=dict, description="name -> token (read API).")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Request body as sent (compressed) -> 413 beyond.")
    max_decompressed_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Body after gzip decoding -> 413 beyond.")
    max_batch_items: int = Field(10_000, ge=1, description="Events per request -> 413 beyond.")
    rate_limit_events_per_s: float = Field(200_000, gt=0, description="Per source (token bucket) -> 429 + Retry-After.")
    rate_limit_burst: int | None = Field(None, ge=1, description="Bucket size; default max(rate, max_batch_items).")
    source_rate_limits: dict[str, float] = Field(default_factory=dict, description="Per-source override of the events/s limit.")
    read_rate_limit_per_s: float = Field(50, gt=0, description="Read API requests per second per read key.")
    request_timeout_s: float = Field(30, gt=0, description="Body upload and durable acknowledgement deadline.")
    submit_threads: int = Field(16, ge=1, le=256, description="Threads handing batches to the write path (group commit).")
    max_pending_events: int = Field(100_000, ge=1, description="Events waiting for durability before new batches get 503.")
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After sent with 503 (backpressure, storage failure).")
    metrics_public: bool = Field(True, description="/metrics without a key (it binds to loopback by default).")
    access_log: bool = Field(False, description="One JSON log line per request (method, path, status, ms; never bodies).")
    read_page_max: int = Field(1000, ge=1, le=100_000, description="Largest page of the read API.")
    read_timeout_s: float = Field(10, gt=0, description="Query timeout of the read API.")


class KafkaSettings(_Section):
    """Kafka collector (`tooltrail kafka`) and producer helper (`tooltrail emit`). Secrets
    (`sasl_password`) come from this file or TOOLTRAIL_KAFKA__SASL_PASSWORD, never from a flag,
    and are never logged."""

    bootstrap: str = Field("127.0.0.1:9092", description="Comma-separated HOST:PORT list.")
    topic: str = Field("tooltrail.events", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    group: str = Field("tooltrail-collectors", min_length=1, max_length=255)
    source: str | None = Field(None, max_length=256, description="Source recorded on stored events; default kafka:<topic>.")
    chain_prefix: str = Field("kafka", pattern=r"^[A-Za-z0-9._-]{1,32}$",
                              description="Chains are named <prefix>-<topic>-p<partition>.")
    dead_letter_topic: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
                                          description="Also copy rejected messages here (original bytes + reason headers).")
    client_id: str = "tooltrail-collector"
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group without committed offsets starts (earliest: never skip events).")
    max_batch: int = Field(10_000, ge=1, le=1_000_000, description="Records per poll, i.e. per durable batch.")
    max_partition_fetch_bytes: int = Field(4 << 20, ge=1024)
    fetch_max_bytes: int = Field(64 << 20, ge=1024)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    rebalance_timeout_ms: int | None = Field(None, ge=1000, description="Default: session_timeout_ms.")
    group_instance_id: str | None = Field(None, description="Static membership (KIP-345): a restart keeps the assignment.")
    lag_log_interval_s: float = Field(10.0, gt=0, description="Seconds between consumer-lag log lines.")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Serve Prometheus /metrics on this port.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    producer_idempotence: bool = Field(True, description=(
        "Idempotent producer (emit, dead-letter copies). Brokers without InitProducerId support need false; "
        "the collector still drops duplicates by event_id."))
