"""Input limits for wire events. One place, so the JSON Schema, the validators and the
README table agree. Every limit is enforced with an error that names the field."""

from __future__ import annotations

MAX_ID_LEN = 128  # event_id, token_id, correlation_id, tool_description_hash
MAX_NAME_LEN = 256  # principal, agent, session, server, server_version, tool, scopes
MAX_TEXT_LEN = 8192  # reason, error
MAX_SCOPES = 256
MAX_LABELS = 64
MAX_LABEL_KEY_LEN = 128
MAX_LABEL_VALUE_LEN = 1024
MAX_ARGS_BYTES = 64 * 1024  # serialized JSON size of `args`
MAX_ARGS_DEPTH = 16
MAX_ARGS_NODES = 10_000  # total keys + values in `args`
MAX_FUTURE_SKEW_S = 300  # a `ts` further than this in the future is rejected
MIN_TS_YEAR = 2000
MAX_LATENCY_MS = 7 * 24 * 3600 * 1000.0
MAX_RESULT_BYTES = 2**53 - 1
MAX_EVENT_BYTES = 256 * 1024  # one raw event (line / message / array item)
JSON_SAFE_INT = 2**53 - 1  # Number.MAX_SAFE_INTEGER: JCS (RFC 8785) numbers are IEEE doubles; larger ints are rejected
