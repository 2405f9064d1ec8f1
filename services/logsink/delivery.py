"""The logsink's sender: claims due notifications with a lease, sends them, records what happened.

At least once, under a stable id: a sender that dies after sending and before marking leaves the
notification pending with a lease; once the lease runs out another (or the restarted) sender
claims it and sends it again, with the same `webhook-id` / `Message-ID`, so receivers de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.logsink import outcomes
from services.logsink.ports import NotificationMetrics, Outbox
from services.logsink.senders import Sender, SendFailed
from shared.catalog_records import NotificationChannelRecord
from shared.errors import PermanentError
from shared.notification_records import NotificationField as F
from shared.redact import Redactor
from shared.secrets import Binding, SecretBox

logger = logging.getLogger(__name__)
Document = dict[str, Any]
CLAIM_ERROR_DELAY = 1.0
STOP_GRACE = 5.0  # seconds a stopping sender gives sends under way


@dataclass(frozen=True)
class DeliveryPolicy:
    attempts: int = 6
    backoff: float = 10.0  # seconds before the 2nd attempt; doubled each time
    max_backoff: float = 3600.0
    lease: float = 60.0  # longer than a send can take (its timeout)
    poll_interval: float = 30.0
    concurrency: int = 4


def secret_of(channel: NotificationChannelRecord, box: SecretBox | None) -> str | None:
    field = "password_encrypted" if channel.kind == "smtp" else "secret_encrypted"
    token = channel.password_encrypted if channel.kind == "smtp" else channel.secret_encrypted
    if token is None:
        return None
    if box is None:
        raise PermanentError("CONNECT_SECRET_KEY is not set: the channel's secret cannot be read")
    return box.decrypt(token, Binding("notification_channel", channel.id, field))


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        senders: Mapping[str, Sender],
        box: SecretBox | None,
        metrics: NotificationMetrics,
        policy: DeliveryPolicy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.senders = senders
        self.box = box
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        """New notifications: look now rather than at the next poll."""
        self._wake.set()

    def _wake_at(self, when: datetime) -> None:
        """A retry this sender scheduled is claimed when due, not at the next poll: so the poll can be
        slow (it only finds what another sender left behind: a crashed one's lease, its retries)."""
        delay = max(0.0, (when - self.clock()).total_seconds())
        asyncio.get_running_loop().call_later(delay, self.wake)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="logsink-notifications")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stops claiming; sends under way may finish within `grace`, the rest are cut short (and sent
        again once their lease runs out). A claim or a mark is never cut in the middle of its write."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=grace)
        sending = set(self._sending)
        if sending:
            await asyncio.wait(sending, timeout=grace)
        leftovers = [t for t in (self._task, *sending) if t is not None and not t.done()]
        for task in leftovers:
            task.cancel()
        for task in leftovers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None

    async def _run(self) -> None:
        limit = asyncio.Semaphore(self.policy.concurrency)
        lease = timedelta(seconds=self.policy.lease)
        while not self._stopping:
            self._wake.clear()
            while not self._stopping:
                await limit.acquire()
                try:
                    claimed = await self.outbox.claim(self.clock(), lease)
                except Exception:
                    limit.release()
                    logger.exception("could not claim notifications")
                    await asyncio.sleep(CLAIM_ERROR_DELAY)
                    break
                if claimed is None:
                    limit.release()
                    break
                task = asyncio.create_task(self._deliver_released(claimed, limit))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.policy.poll_interval)

    async def _deliver_released(self, notification: Document, limit: asyncio.Semaphore) -> None:
        try:
            await self.deliver(notification)
        except Exception:  # the lease runs out and it is claimed again
            logger.exception("could not record a notification's delivery", extra={"id": notification[F.ID]})
        finally:
            limit.release()
            self.wake()  # a free slot: claim the next one

    async def deliver(self, notification: Document) -> None:
        """Send one claimed notification and record the outcome."""
        attempts = int(notification.get(F.ATTEMPTS) or 0) + 1
        kind = str(notification.get(F.CHANNEL_KIND))
        notification_id = str(notification[F.ID])
        redactor = Redactor()
        # A database error reading the channel propagates: the lease runs out and it is tried again,
        # without spending an attempt on something the receiver never saw.
        channel = await self.outbox.channel(int(notification[F.CHANNEL_ID]))
        try:
            if channel is None:
                raise SendFailed(f"channel {notification[F.CHANNEL_ID]} no longer exists", transient=False)
            secret = secret_of(channel, self.box)
            redactor.add(secret)
            sender = self.senders.get(channel.kind.value)
            if sender is None:
                raise SendFailed(f"no sender for channel kind {channel.kind.value}", transient=False)
            await sender.send(notification, channel, secret)
        except (SendFailed, PermanentError) as exc:
            transient = isinstance(exc, SendFailed) and exc.transient
            await self._failed(notification_id, kind, attempts, redactor.scrub(str(exc)), transient=transient)
            return
        except Exception as exc:  # a bug in a sender: spend an attempt, so it cannot loop for ever
            logger.exception("a notification's send broke", extra={"id": notification_id})
            await self._failed(
                notification_id, kind, attempts, f"unexpected error: {type(exc).__name__}", transient=True
            )
            return
        await self.outbox.mark_sent(notification_id, attempts, self.clock())
        self.metrics.notification(kind, "sent")
        logger.info("notification sent", extra={"id": notification_id, "attempts": attempts})

    async def _failed(
        self, notification_id: str, kind: str, attempts: int, error: str, *, transient: bool
    ) -> None:
        policy = self.policy
        step = outcomes.after_failure(
            attempts, transient=transient, now=self.clock(), budget=policy.attempts,
            base=policy.backoff, cap=policy.max_backoff,
        )  # fmt: skip
        if step.retry_at is None:
            await self.outbox.mark_failed(notification_id, attempts, error)
            self.metrics.notification(kind, "failed")
            logger.warning("notification failed", extra={"id": notification_id, "reason": error})
            return
        await self.outbox.retry_later(notification_id, attempts, step.retry_at, error)
        self._wake_at(step.retry_at)
        self.metrics.notification(kind, "retried")
        logger.info("notification will be retried", extra={"id": notification_id, "reason": error})
