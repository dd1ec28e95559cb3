"""Configuration of the write path: segments, checkpoints, redaction, collectors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    segment_max_rows: int = Field(100_000, ge=1, le=10_000_000, description="Rows per segment before it is sealed.")
    segment_max_seconds: float = Field(1.0, gt=0, le=3600, description="Seal the open segment after this long (bounds query freshness).")
    checkpoint_every_events: int = Field(10_000, ge=1, description="Sign a checkpoint at least every N events.")
    checkpoint_every_seconds: float = Field(10.0, gt=0, description="... or every T seconds when events arrived.")
    checkpoint_export: str | None = Field(None, description="Directory (or http(s) URL) that receives a copy of every signed checkpoint.")
    signing_key_file: str | None = Field(None, description="Ed25519 private key (PEM); default <data>/keys/signing.key, generated 0600 on first run.")
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
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: dict[str, str] = Field(default_factory=dict, description="source -> token (ingest). Prefer `tooltrail keys create`.")
    read_keys: dict[str, str] = Field(default_factory=dict, description="name -> token (read API).")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_decompressed_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(10_000, ge=1)
    rate_limit_events_per_s: float = Field(200_000, gt=0, description="Per source.")
    request_timeout_s: float = Field(30, gt=0)


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    topic: str = "tooltrail.events"
    group: str = "tooltrail-collectors"
    dead_letter_topic: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
