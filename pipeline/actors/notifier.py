"""Notifier actor: signed webhook deliveries of job events, retried with backoff, kept across
restarts.

When a job becomes completed, failed or cancelled, the ledger records a delivery in the same
transaction as the state change (``Store.set_video_state(notify=True)``) and wakes this actor,
so an event is never lost to a crash and the pipeline never waits for a receiver. Each delivery
is ``POST VR_WEBHOOK_URL`` with the body ``{"event": "job.completed", "job": {…as GET
/api/jobs/{id}…}}`` (built at the first try and kept, so every retry sends the same bytes) and
the header ``X-Refresher-Signature: sha256=<hex HMAC-SHA256 of the body with
VR_WEBHOOK_SECRET>``. A 2xx answer delivers it; anything else (another status, a refused
connection, ``TIMEOUT`` seconds of silence) is tried again after ``RETRY_DELAYS``, then given
up. Every try is logged and counted (``statistics``, ``/metrics``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx
import trio

import pipeline
from pipeline.state.rows import Delivery, Job
from pipeline.state.store import AsyncStore

# Seconds to wait after each failed try: six tries in all, the last about 22 minutes in.
RETRY_DELAYS = (5.0, 20.0, 60.0, 300.0, 900.0)
TIMEOUT = 10.0
# How often to look for due deliveries when nothing wakes the actor (a safety net).
IDLE_RECHECK = 300.0


def signature(secret: str, body: bytes) -> str:
    """The ``X-Refresher-Signature`` header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def next_try(tries: int, now: float) -> float | None:
    """When to try again after ``tries`` failed tries; None: give up."""
    return now + RETRY_DELAYS[tries - 1] if tries <= len(RETRY_DELAYS) else None


@dataclass(frozen=True)
class NotifierStatistics:
    delivered: int = 0
    failed_tries: int = 0
    given_up: int = 0


class Notifier:
    """``render_job`` makes the API's JSON of a job (``web.views.job_json``)."""

    def __init__(self, store: AsyncStore, *, url: str, secret: str,
                 render_job: Callable[[Job], dict], clock: Callable[[], float],
                 log: logging.Logger):
        self.store, self.url, self.secret = store, url, secret
        self.render_job, self.clock, self.log = render_job, clock, log
        self.stats = NotifierStatistics()
        self._wake = trio.Event()

    def wake(self) -> None:
        """A delivery is owed (the ledger's hook); never blocks."""
        self._wake.set()

    def statistics(self) -> NotifierStatistics:
        return self.stats

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        headers = {"User-Agent": f"video-refresher/{pipeline.__version__}"}
        async with httpx.AsyncClient(timeout=TIMEOUT, headers=headers) as client:
            task_status.started()
            while True:
                self._wake = trio.Event()
                try:
                    wait = await self._pass(client)
                except Exception:  # a store error (a full disk) must not stop the service
                    self.log.exception("webhook deliveries failed; trying again later")
                    wait = RETRY_DELAYS[0]
                with trio.move_on_after(min(wait, IDLE_RECHECK)):
                    await self._wake.wait()

    async def _pass(self, client: httpx.AsyncClient) -> float:
        """Try every delivery that is due; returns the seconds until the next one is."""
        due = await self.store.due_deliveries(self.clock())
        # Every body first, as close to its event as can be: one slow receiver must not make
        # the next delivery describe a later state of its job.
        due = [await self._with_body(d) for d in due]
        for delivery in due:
            await self._try(client, delivery)
        next_at = await self.store.next_delivery_at()
        return IDLE_RECHECK if next_at is None else max(next_at - self.clock(), 0.0)

    async def _with_body(self, delivery: Delivery) -> Delivery:
        if delivery.body is not None:
            return delivery
        done = replace(delivery, body=await self._body(delivery))
        await self.store.record_delivery(done)
        return done

    async def _body(self, delivery: Delivery) -> str:
        if delivery.body is not None:
            return delivery.body
        job = await self.store.get_job(delivery.job_id)
        document = self.render_job(job) if job is not None else {"id": delivery.job_id,
                                                                 "status": "deleted"}
        return json.dumps({"event": delivery.event, "job": document}, separators=(",", ":"))

    async def _try(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        body = await self._body(delivery)
        data = body.encode("utf-8")
        tries = delivery.tries + 1
        status, error = None, None
        try:
            response = await client.post(self.url, content=data, headers={
                "Content-Type": "application/json",
                "X-Refresher-Event": delivery.event,
                "X-Refresher-Delivery": str(delivery.id),
                "X-Refresher-Signature": signature(self.secret, data),
            })
            status = response.status_code
            if not 200 <= status < 300:
                error = f"answered {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = self.clock()
        extra = {"jobId": delivery.job_id, "event": delivery.event, "delivery": delivery.id,
                 "try": tries, "status": status}
        if error is None:
            done = replace(delivery, body=body, tries=tries, delivered_at=now, last_status=status,
                           last_error=None)
            self.stats = replace(self.stats, delivered=self.stats.delivered + 1)
            self.log.info("webhook delivered", extra=extra)
        else:
            again = next_try(tries, now)
            done = replace(delivery, body=body, tries=tries, last_status=status, last_error=error,
                           next_at=again if again is not None else now,
                           gave_up_at=None if again is not None else now)
            self.stats = replace(self.stats, failed_tries=self.stats.failed_tries + 1,
                                 given_up=self.stats.given_up + (again is None))
            self.log.warning("webhook failed" if again is not None else "webhook given up",
                             extra={**extra, "error": error,
                                    "retryIn": round(again - now, 1) if again else None})
        with trio.CancelScope(shield=True):
            await self.store.record_delivery(done)
