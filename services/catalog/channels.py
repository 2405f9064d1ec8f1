"""Notification channels (admin): SMTP servers and webhooks that rules on jobs and groups name."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.catalog import audit
from services.catalog.channel_schemas import ChannelCreate, ChannelCreated, ChannelView, SmtpChannelCreate
from services.catalog.domain import notifications
from services.catalog.ports import CatalogRecords, CatalogRepository, UnitOfWork
from shared.catalog_records import NotificationChannelRecord, NotificationRule
from shared.errors import NotFound
from shared.secrets import Binding, SecretBox

SECRETS = {"password_encrypted", "secret_encrypted"}
CHANNEL = "notification_channel"  # the kind in a secret's binding


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class NotificationChannels:
    def __init__(self, records: CatalogRepository, secret_box: SecretBox) -> None:
        self.records = records
        self.secret_box = secret_box

    async def create(self, body: ChannelCreate, by: str) -> ChannelCreated:
        document: dict[str, Any] = body.model_dump(exclude={"password"}, mode="json")
        document.update(_id=await self.records.channels.new_id(), created_at=datetime.now(UTC), created_by=by)
        signing_secret = None
        if isinstance(body, SmtpChannelCreate):
            notifications.validate_address(body.from_address, "from_address")
            for index, address in enumerate(body.to):
                notifications.validate_address(address, f"to[{index}]")
            if body.password is not None:
                document["password_encrypted"] = self.secret_box.encrypt(
                    body.password.get_secret_value(), Binding(CHANNEL, document["_id"], "password_encrypted")
                )
        else:
            notifications.validate_webhook_url(body.url)
            signing_secret = new_signing_secret()
            document["secret_encrypted"] = self.secret_box.encrypt(
                signing_secret, Binding(CHANNEL, document["_id"], "secret_encrypted")
            )
        record = NotificationChannelRecord.model_validate(document)
        entry = audit.change_entry(by, "notification channel", record.id, "created", after=record)
        await audit.with_entry(self.records, lambda unit: unit.channels.add(record), entry)
        return ChannelCreated(**channel_view(record).model_dump(), signing_secret=signing_secret)

    async def get(self, channel_id: int) -> ChannelView:
        record = await self.records.channels.get(channel_id)
        if record is None:
            raise NotFound(f"notification channel {channel_id} does not exist", field="channel_id")
        return channel_view(record)

    async def page(self, *, offset: int, limit: int) -> tuple[list[ChannelView], int]:
        records, total = await self.records.channels.page(offset=offset, limit=limit)
        return [channel_view(record) for record in records], total

    async def delete(self, channel_id: int, by: str) -> None:
        """A rule that still names a deleted channel records its notifications as failed ("no such channel")."""

        async def remove(unit: UnitOfWork) -> None:
            if not await unit.channels.remove(channel_id):
                raise NotFound(f"notification channel {channel_id} does not exist", field="channel_id")

        entry = audit.change_entry(by, "notification channel", channel_id, "deleted")
        await audit.with_entry(self.records, remove, entry)


async def check_rules(records: CatalogRecords, rules: Sequence[NotificationRule]) -> None:
    """422 naming `notifications[i].channels` when a rule names a channel that does not exist."""
    named = {channel_id for rule in rules for channel_id in rule.channels}
    existing = await records.channels.existing(named) if named else set()
    notifications.validate_rules(rules, existing, "notifications")


def channel_view(record: NotificationChannelRecord) -> ChannelView:
    return ChannelView(**record.model_dump(exclude=SECRETS))
