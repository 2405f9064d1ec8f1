"""The catalog's rules of notification channels and rules, without I/O (issue #16)."""

from __future__ import annotations

import pytest

from services.catalog.channels import new_signing_secret
from services.catalog.domain.notifications import validate_address, validate_rules, validate_webhook_url
from shared.catalog_records import NotificationRule, NotifyOn
from shared.errors import ValidationFailed


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://127.0.0.1:8080/h", "http://localhost/h", "http://[::1]/h"]
)
def test_https_webhook_urls_and_plain_http_to_loopback_are_accepted(url: str) -> None:
    validate_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "http://10.0.0.8/x", "ftp://a.example.com/x", "https://u:p@a.example.com/",
     "not a url", "https:///nohost", "http://127.0.0.1.example.com/x"],
)  # fmt: skip
def test_other_webhook_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        validate_webhook_url(url)
    assert refused.value.field == "url"


def test_addresses_are_checked() -> None:
    validate_address("ops.team+connect@mail.example.com", "to[0]")
    for bad in ("ops", "a@b@c.com", "a b@c.com", "a@localhost", "@example.com", "a@-x.com"):
        with pytest.raises(ValidationFailed) as refused:
            validate_address(bad, "to[2]")
        assert refused.value.field == "to[2]"


def test_a_rule_naming_an_unknown_channel_is_refused_at_its_index() -> None:
    rules = [
        NotificationRule(on=(NotifyOn.FAILED,), channels=(1,)),
        NotificationRule(on=(NotifyOn.SUCCEEDED,), channels=(1, 5)),
    ]
    validate_rules(rules[:1], {1}, "notifications")
    with pytest.raises(ValidationFailed) as refused:
        validate_rules(rules, {1}, "notifications")
    assert refused.value.field == "notifications[1].channels"


def test_signing_secrets_are_standard_webhooks_secrets_and_differ() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = new_signing_secret()
    assert secret.startswith("whsec_") and secret != new_signing_secret()
    Webhook(secret)  # the package accepts it
