"""Options every plain aiokafka client of the project takes from the settings (admin, lag,
dead-letter tools): the same security as the services' own broker connection."""

from __future__ import annotations

import ssl
from typing import Any

from shared.settings import Settings


def client_security(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_* (PLAINTEXT: none)."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = ssl.create_default_context()
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = (settings.kafka_sasl_mechanism or "PLAIN").upper()
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options
