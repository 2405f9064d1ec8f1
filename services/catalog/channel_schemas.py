"""Request and response bodies of the notification channels API (responses never carry secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from services.catalog.schemas import HOST, NAME, Request, Response
from shared.catalog_records import ChannelKind


class SmtpChannelCreate(Request):
    """E-mail through an SMTP server: STARTTLS unless turned off, authentication when a username is given."""

    kind: Literal["smtp"]
    name: str = NAME
    host: str = Field(min_length=1, max_length=253, pattern=HOST)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS before sending.")
    username: str = Field(default="", max_length=200, description="Empty: no authentication.")
    password: SecretStr | None = Field(default=None, max_length=1000)
    from_address: str = Field(min_length=3, max_length=254)
    to: list[str] = Field(min_length=1, max_length=50, description="Recipients' addresses.")


class WebhookChannelCreate(Request):
    """An HTTPS POST signed as Standard Webhooks says; Connect generates the signing secret."""

    kind: Literal["webhook"]
    name: str = NAME
    url: str = Field(min_length=8, max_length=2000, description="https (http only to loopback).")


ChannelCreate = Annotated[SmtpChannelCreate | WebhookChannelCreate, Field(discriminator="kind")]


class ChannelView(Response):
    id: int
    kind: ChannelKind
    name: str
    host: str = ""
    port: int = 0
    starttls: bool = False
    username: str = ""
    from_address: str = ""
    to: list[str] = []
    url: str = ""
    created_at: datetime
    created_by: str


class ChannelCreated(ChannelView):
    signing_secret: str | None = Field(
        default=None,
        description="Webhooks: the Standard Webhooks secret (`whsec_…`) to verify signatures with. "
        "Shown once, in this answer; stored encrypted and never returned again.",
    )
