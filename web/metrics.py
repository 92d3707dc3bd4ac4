"""``GET /metrics``: aggregate figures in the Prometheus text format, for scrapers.

Public (no token) and therefore aggregate only: counts, bytes and seconds, never a job id, a
file name or a path. Each app has its own ``CollectorRegistry``, so two apps in one process (the
tests) never share or double-register series.

What is read when:
- live on every scrape, from the ``statistics()`` records of the actors: queue depth and running
  renders (scheduler), WebSocket subscribers (progress hub), FFmpeg processes and seconds
  (service), janitor counters;
- gathered asynchronously just before rendering: jobs by state (the store) and bytes stored
  under ``uploads/`` and ``outputs/`` (the janitor's disk walk, in a worker thread);
- counted where the bytes flow: upload bytes (``receive_upload``'s ``on_bytes``) and download
  bytes (``count_bytes`` around the ZIP stream).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from quart import Blueprint, Response, current_app

from pipeline.state.states import JobStatus

bp = Blueprint("metrics", __name__)


@dataclass(frozen=True)
class _Gathered:
    """Figures that need I/O, read once per scrape."""

    jobs: dict[str, int] = field(default_factory=dict)
    stored_bytes: int = 0


class Metrics:
    """The app's registry and the counters the web layer increments."""

    def __init__(self, service):
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        # Plain tallies rather than prometheus Counters: no "_created" series, one collector.
        self.upload_bytes = 0
        self.download_bytes = 0
        self._gathered = _Gathered()
        self._lock = trio.Lock()
        self.registry.register(_ServiceCollector(self))

    def add_upload(self, n: int) -> None:
        self.upload_bytes += n

    def add_download(self, n: int) -> None:
        self.download_bytes += n

    async def render(self) -> bytes:
        """The exposition text. Serialised, so concurrent scrapes never mix their figures."""
        async with self._lock:
            rows = await self.service.store.job_rows()
            usage = await trio.to_thread.run_sync(self.service.janitor.disk_usage)
            self._gathered = _Gathered(dict(Tally(str(r.status) for r in rows)), usage.total)
            return generate_latest(self.registry)


class _ServiceCollector(Collector):
    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        service = self._metrics.service
        gathered = self._metrics._gathered

        yield CounterMetricFamily("vr_upload_bytes", "Request body bytes received by video uploads.",
                                  value=self._metrics.upload_bytes)
        yield CounterMetricFamily("vr_download_bytes", "ZIP bytes sent to clients by downloads.",
                                  value=self._metrics.download_bytes)

        jobs = GaugeMetricFamily("vr_jobs", "Jobs in the store by state.", labels=["state"])
        for state in JobStatus:
            jobs.add_metric([state.value], gathered.jobs.get(state.value, 0))
        yield jobs

        sched = service.scheduler.statistics()
        yield GaugeMetricFamily("vr_queue_depth", "Videos waiting for an FFmpeg worker.",
                                value=sched.queued)
        yield GaugeMetricFamily("vr_renders_running", "FFmpeg renders running now.",
                                value=sched.running)
        yield GaugeMetricFamily("vr_workers", "FFmpeg renders allowed at once (VR_WORKERS).",
                                value=sched.workers)

        stats = service.statistics()
        yield CounterMetricFamily("vr_ffmpeg_seconds", "Wall-clock seconds of FFmpeg processes.",
                                  value=stats.ffmpeg_seconds)
        yield CounterMetricFamily("vr_ffmpeg_processes", "FFmpeg processes that ended.",
                                  value=stats.ffmpeg_runs)

        yield GaugeMetricFamily("vr_stored_bytes", "Bytes stored under uploads/ and outputs/.",
                                value=gathered.stored_bytes)
        yield GaugeMetricFamily("vr_storage_cap_bytes", "Storage budget (VR_STORAGE_CAP).",
                                value=service.settings.storage_cap)

        yield GaugeMetricFamily("vr_websocket_subscribers", "Open WebSocket subscriptions.",
                                value=service.hub.statistics().subscribers)

        hooks = service.notifier.statistics() if service.notifier is not None else None
        for name, value, text in [
            ("vr_webhook_delivered", hooks and hooks.delivered, "Webhook deliveries answered 2xx."),
            ("vr_webhook_failed_tries", hooks and hooks.failed_tries,
             "Webhook tries that failed (another status, no connection, a timeout)."),
            ("vr_webhook_given_up", hooks and hooks.given_up,
             "Webhook deliveries given up after every retry."),
        ]:
            yield CounterMetricFamily(name, text, value=value or 0)
        yield GaugeMetricFamily("vr_queue_paused", "1 while the queue is paused.",
                                value=int(sched.paused))

        jan = service.janitor.statistics()
        for name, value, text in [
            ("vr_janitor_expired_jobs", jan.expired, "Jobs whose results expired."),
            ("vr_janitor_evicted_jobs", jan.evicted, "Finished jobs evicted to stay under the cap."),
            ("vr_janitor_orphans_removed", jan.orphans_removed, "Orphaned files and folders removed."),
        ]:
            yield CounterMetricFamily(name, text, value=value)


def install_metrics(app, service) -> Metrics:
    """Give ``app`` its metrics (``app.extensions["metrics"]``) and the ``/metrics`` route."""
    metrics = Metrics(service)
    app.extensions["metrics"] = metrics
    app.register_blueprint(bp)
    return metrics


def count_upload() -> Callable[[int], None]:
    """The ``on_bytes`` callback for ``receive_upload`` in the current app."""
    return current_app.extensions["metrics"].add_upload


async def count_bytes(chunks: AsyncIterator[bytes], on_bytes: Callable[[int], None]
                      ) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, counting them; closing this closes ``chunks`` (its files)."""
    async with aclosing(chunks):
        async for chunk in chunks:
            on_bytes(len(chunk))
            yield chunk


@bp.get("/metrics")
async def metrics():
    body = await current_app.extensions["metrics"].render()
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)
