"""Rules of notification channels and of the rules that name them: an address that is one, a webhook
URL that is https (plain http only to loopback), channels that exist."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from shared.catalog_records import NotificationRule
from shared.errors import ValidationFailed

# local@domain.tld, as mail servers accept it: no spaces, no second '@', a dotted domain.
ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
LOOPBACK_NAMES = {"localhost"}


def validate_address(address: str, field: str) -> None:
    if len(address) > 254 or not ADDRESS.match(address):
        raise ValidationFailed(f"{field}: '{address[:80]}' is not an e-mail address", field=field)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_webhook_url(url: str, field: str = "url") -> None:
    """https anywhere; http only to a loopback address (a receiver on the same machine)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationFailed(f"{field}: give an absolute https URL", field=field)
    if parts.username or parts.password:
        raise ValidationFailed(f"{field}: no credentials in the URL (the body is signed)", field=field)
    if parts.scheme == "http" and not is_loopback(host):
        raise ValidationFailed(f"{field}: a webhook URL must be https (http only to loopback)", field=field)


def validate_rules(rules: Sequence[NotificationRule], existing: Iterable[int], field: str) -> None:
    """Every channel a rule names exists; `field` is where the rules are (`notifications`)."""
    known = set(existing)
    for index, rule in enumerate(rules):
        for channel_id in rule.channels:
            if channel_id not in known:
                where = f"{field}[{index}].channels"
                raise ValidationFailed(
                    f"{where}: notification channel {channel_id} does not exist", field=where
                )
