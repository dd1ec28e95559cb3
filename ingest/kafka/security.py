"""Connection settings passed through to aiokafka: bootstrap, SASL (PLAIN / SCRAM) and TLS.

`client_kwargs` is the only place that touches the password; `describe` is what gets logged
(mechanism and whether credentials are set, never their values).
"""

from __future__ import annotations

from typing import Any

from ingest.settings import KafkaSettings


class KafkaConfigError(ValueError):
    """Inconsistent security settings (reported before connecting)."""


def client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments shared by AIOKafkaConsumer / AIOKafkaProducer / AIOKafkaAdminClient."""
    s = settings
    kw: dict[str, Any] = {"bootstrap_servers": s.bootstrap, "client_id": s.client_id,
                          "security_protocol": s.security_protocol}
    if s.security_protocol.startswith("SASL_"):
        if not s.sasl_mechanism:
            raise KafkaConfigError(f"security_protocol {s.security_protocol} needs kafka.sasl_mechanism "
                                   "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
        if not s.sasl_username or s.sasl_password is None:
            raise KafkaConfigError("SASL needs kafka.sasl_username and kafka.sasl_password "
                                   "(set the password in the config file or TOOLTRAIL_KAFKA__SASL_PASSWORD)")
        kw.update(sasl_mechanism=s.sasl_mechanism, sasl_plain_username=s.sasl_username,
                  sasl_plain_password=s.sasl_password.get_secret_value())
    elif s.sasl_mechanism:
        raise KafkaConfigError(f"kafka.sasl_mechanism is set but security_protocol is {s.security_protocol}; "
                               "use SASL_SSL (or SASL_PLAINTEXT)")
    if s.security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = ssl_context(s)
    elif s.ssl_cafile or s.ssl_certfile or s.ssl_keyfile:
        raise KafkaConfigError(f"TLS files are set but security_protocol is {s.security_protocol}; use SSL or SASL_SSL")
    return kw


def ssl_context(settings: KafkaSettings) -> Any:
    from aiokafka.helpers import create_ssl_context

    s = settings
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        raise KafkaConfigError("a client certificate needs both kafka.ssl_certfile and kafka.ssl_keyfile")
    try:
        ctx = create_ssl_context(cafile=s.ssl_cafile, certfile=s.ssl_certfile, keyfile=s.ssl_keyfile,
                                 password=s.ssl_keyfile_password.get_secret_value() if s.ssl_keyfile_password else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise KafkaConfigError(f"cannot load TLS files: {type(exc).__name__}: {exc}") from None
    ctx.check_hostname = s.ssl_check_hostname
    return ctx


def describe(settings: KafkaSettings) -> dict[str, Any]:
    """Loggable view of the connection settings: no secret values."""
    s = settings
    return {
        "bootstrap": s.bootstrap,
        "security_protocol": s.security_protocol,
        "sasl_mechanism": s.sasl_mechanism,
        "sasl_username_set": bool(s.sasl_username),
        "sasl_password_set": s.sasl_password is not None,
        "tls_ca": bool(s.ssl_cafile),
        "tls_client_cert": bool(s.ssl_certfile),
    }
