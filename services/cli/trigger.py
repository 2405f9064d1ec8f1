"""`connect trigger NAME`: publish a trigger event, as another system would, to start on-event jobs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer

from services.cli.common import fail
from services.cli.output import Format, OutputOption, emit_json


def _params(values: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"'{value}' is not key=value", param_hint="--param")
        params[key] = text
    return params


def trigger(
    name: Annotated[str, typer.Argument(help="The trigger's name: the routing key on connect.triggers.")],
    key: Annotated[
        str | None,
        typer.Option("--key", "-k", help="Idempotency key: one run per distinct key (default: a new one)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="k=v passed to the runs; repeatable.")
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Publish shared.contracts.TriggerFired on the `connect.triggers` exchange (needs AMQP_URL)."""
    from pydantic import ValidationError

    from shared.contracts.triggers import TriggerData, TriggerFired

    try:
        data = TriggerData(name=name, idempotency_key=key or uuid.uuid4().hex, params=_params(param or []))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise typer.BadParameter(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    message = TriggerFired(source="connect/cli", subject=name, data=data)
    try:
        asyncio.run(publish(message))
    except PublishError as exc:
        raise fail(str(exc)) from None
    if output is Format.JSON:
        emit_json({"name": name, "idempotency_key": data.idempotency_key, "params": data.params,
                   "message_id": message.id})  # fmt: skip
    else:
        typer.echo(f"published trigger {name} (idempotency key {data.idempotency_key})")


class PublishError(Exception):
    pass


async def publish(message: object) -> None:
    import aio_pika
    from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity, DeliveryError

    from shared.contracts.cloudevents import STRUCTURED_CONTENT_TYPE
    from shared.contracts.triggers import TriggerFired
    from shared.settings import CommonSettings
    from shared.topology import Topology

    assert isinstance(message, TriggerFired)
    settings = CommonSettings()
    exchange_name = Topology(prefix=settings.amqp_prefix).name("connect.triggers")
    host = settings.amqp_url.split("@")[-1]
    try:
        connection = await asyncio.wait_for(aio_pika.connect(settings.amqp_url), timeout=10)
    except (OSError, TimeoutError, AMQPError) as exc:
        raise PublishError(
            f"cannot reach RabbitMQ at {host} (set AMQP_URL): {exc or type(exc).__name__}"
        ) from exc
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            exchange = await channel.get_exchange(exchange_name, ensure=True)
        except ChannelNotFoundEntity as exc:
            raise PublishError(
                f"exchange {exchange_name} does not exist: is Connect running on {host}?"
            ) from exc
        body = aio_pika.Message(
            message.model_dump_json().encode(),
            content_type=STRUCTURED_CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.id,
            type=message.type,
            app_id="connect-cli",
        )
        try:
            await exchange.publish(body, routing_key=message.data.name, mandatory=True)
        except DeliveryError as exc:
            raise PublishError(
                f"no queue took the trigger {message.data.name} (is the scheduler running?)"
            ) from exc
