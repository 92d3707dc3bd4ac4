"""The runner's verification step: verify every rendered variation, measure how distinct each
one is, and re-roll those that look too much like their source or a sibling.

Order of work for one video, after its FFmpeg render succeeded:

1. Facts about the source (tags, audio tail) and its thumbnails at ``SAMPLE_COUNT`` content
   times: the runner's render taps them off its own decode of the source
   (``command.build_render_command(thumbnails=…)``); without them, ``distinct.sample_source``
   decodes the source once more.
2. For each output: the cheap file checks (``verify.check_file``), then one full decode that both
   proves it decodes cleanly and taps its thumbnails at the same content times. The outputs'
   decodes (and the source's, when its thumbnails are sampled here) run side by side, one
   single-threaded FFmpeg per core
   (``verify.decode_command``): on 2 cores, decoding five 5 s 1080p outputs took 1.43-1.49 s
   (2.5-2.6 CPU s) against 1.70-2.02 s (2.7-3.2 CPU s) one after the other with FFmpeg's
   frame threads.
3. Distances (``distinct.DistanceTable``). Each variation closer than ``min_distance`` to the
   source, and the later of each too-close sibling pair, gets fresh parameters
   (``effects.reroll_variation``) and is rendered again, all of them in one more FFmpeg run
   (``rerender``, owned by the runner). A re-rolled output replaces the first one only if it is
   more distinct; either way the re-roll is counted. At most ``max_rerolls`` rounds.

Error handling: ``VerificationFailed`` from any output (first render or re-roll) propagates, the
first output's in variation order when several fail; the runner fails the video with its
message. A source whose thumbnails cannot be taken only loses its distance figures (``None``):
the outputs were verified on their own and are still delivered.

Resource handling: every part file this step creates is put on the runner's clean-up stack
(``cleanup``, a ``contextlib.ExitStack``) before FFmpeg writes it, so the runner's clean-up on
failure or cancellation removes it; re-rolled parts that lose are removed here.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from pipeline.media import distinct, verify
from pipeline.media.distinct import DistanceTable, FrameHashes
from pipeline.media.effects import EffectOptions, VariationParams, expected_duration, reroll_variation
from pipeline.media.probe import MediaInfo

# Re-roll rounds per video; each round is one more FFmpeg run for the variations still too close.
MAX_REROLLS = 2

Rerender = Callable[[list[VariationParams], list[Path]], Awaitable[None]]


@dataclass(frozen=True)
class Variation:
    """One output slot after verification: what to commit and record."""

    params: VariationParams
    part: Path  # the verified file, still a ``*.part``
    seed: str  # the runner's seed label, with ":reroll<N>" once a re-roll replaced it
    duration: float
    distance: dict | None
    hashes: tuple[FrameHashes, ...] = ()
    rerolls: int = 0


@dataclass(frozen=True)
class Rendered:
    """What one render made, to verify: a part file per variation, in variation order, with the
    names the user sees and the seed labels the manifest records."""

    ffmpeg: str
    source: Path
    info: MediaInfo
    variations: tuple[VariationParams, ...]
    parts: tuple[Path, ...]
    names: tuple[str, ...]
    seeds: tuple[str, ...]
    job_seed: str | int  # what re-rolls draw from, with the video's index
    video_index: int
    options: EffectOptions


async def check_outputs(rendered: Rendered, *, min_distance: float, rerender: Rerender,
                        cleanup: ExitStack, max_rerolls: int = MAX_REROLLS,
                        source_thumbnails: Path | None = None) -> list[Variation]:
    """Verify and measure ``rendered``; re-roll as described in the module docstring.

    ``source_thumbnails``: a file the render wrote with the source's thumbnails at
    ``distinct.sample_times(info.duration)``; when it is missing or short they are sampled here.

    ``rerender(params, paths)`` must render ``params`` into ``paths`` (one FFmpeg run) or raise.
    The part file of every re-roll is put on ``cleanup`` (removed when it closes) before it is
    rendered.
    """
    checker = await _Checker.start(rendered)
    slots, source_hashes = await checker.first_pass(source_thumbnails)
    table: DistanceTable | None = None
    if source_hashes is not None:
        table = await trio.to_thread.run_sync(
            DistanceTable.measure, source_hashes, [s.hashes for s in slots]
        )
    for attempt in range(1, max_rerolls + 1):
        if table is None or source_hashes is None:
            break
        low = table.too_close(min_distance)
        if not low:
            break
        slots, table = await checker.reroll(slots, table, source_hashes, low, attempt,
                                            rerender, cleanup)
    return [
        replace(s, distance=table.report(i, s.rerolls) if table is not None else None)
        for i, s in enumerate(slots)
    ]


@dataclass
class _Checker:
    """One video's verification: its render, the source's reference facts, the content times
    its thumbnails are taken at, and the decodes' concurrency."""

    rendered: Rendered
    reference: verify.Reference
    times: list[float]
    limiter: trio.CapacityLimiter

    @classmethod
    async def start(cls, rendered: Rendered) -> _Checker:
        reference = await trio.to_thread.run_sync(verify.reference_for, rendered.source,
                                                  rendered.info)
        return cls(rendered, reference, distinct.sample_times(rendered.info.duration),
                   trio.CapacityLimiter(_cores()))

    async def first_pass(self, source_thumbnails: Path | None,
                         ) -> tuple[list[Variation], list[FrameHashes] | None]:
        """Every output verified and hashed, and the source's hashes beside them (None when
        its thumbnails cannot be taken)."""
        r = self.rendered
        source_hashes: list[FrameHashes] | None = None

        async def sample_source() -> None:
            nonlocal source_hashes
            thumbs = await trio.to_thread.run_sync(_read_thumbnails, source_thumbnails)
            if len(thumbs) < len(self.times):
                async with self.limiter:
                    try:
                        thumbs = await distinct.sample_source(r.ffmpeg, r.source, self.times)
                    except distinct.SamplingFailed:
                        return
            source_hashes = await trio.to_thread.run_sync(distinct.frame_hashes, thumbs)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_source)
            # Failures are raised outside the nursery, so that they are not wrapped in a group.
            results = await self.verify(range(len(r.variations)), r.variations, r.parts)
        checked = _first_failure_raised(results)
        slots = [
            Variation(params=params, part=part, seed=r.seeds[i], duration=duration,
                      distance=None, hashes=hashes)
            for i, (params, part, (duration, hashes))
            in enumerate(zip(r.variations, r.parts, checked, strict=True))
        ]
        return slots, source_hashes

    async def reroll(self, slots: list[Variation], table: DistanceTable,
                     source_hashes: list[FrameHashes], low: list[int], attempt: int,
                     rerender: Rerender, cleanup: ExitStack,
                     ) -> tuple[list[Variation], DistanceTable]:
        """One round: fresh parameters for the slots in ``low``, rendered in one FFmpeg run; a
        re-roll replaces its slot only when it is more distinct."""
        r = self.rendered
        fresh: list[VariationParams] = []
        for i in low:
            fresh.append(reroll_variation(r.job_seed, r.video_index, i + 1, attempt, r.options,
                                          avoid=[s.params for s in slots] + fresh))
        paths = [_reroll_path(slots[i].part, attempt) for i in low]
        for path in paths:
            cleanup.callback(_unlink_quiet, path)
        await rerender(fresh, paths)
        rechecked = _first_failure_raised(await self.verify(low, fresh, paths))
        for i, params, path, (duration, hashes) in zip(low, fresh, paths, rechecked, strict=True):
            candidate = replace(slots[i], params=params, part=path, duration=duration,
                                hashes=hashes, seed=f"{r.seeds[i]}:reroll{attempt}")
            trial = slots[:i] + [candidate] + slots[i + 1:]
            trial_table = await trio.to_thread.run_sync(
                table.replaced, i, source_hashes, [s.hashes for s in trial]
            )
            loser = path
            if trial_table.score(i) > table.score(i):
                loser, slots, table = slots[i].part, trial, trial_table
            slots[i] = replace(slots[i], rerolls=slots[i].rerolls + 1)
            await trio.to_thread.run_sync(_unlink_quiet, loser)
        return slots, table

    async def verify(self, slots, variations, parts) -> list:
        """`_verify` each part (named as its slot), side by side; see `_verify_all`."""
        r = self.rendered
        return await _verify_all(self.limiter, [
            (r.ffmpeg, part, r.names[i], self.reference, r.info, params, self.times)
            for i, params, part in zip(slots, variations, parts, strict=True)
        ])


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


async def _verify_all(limiter: trio.CapacityLimiter, jobs: list[tuple]) -> list:
    """`_verify` for each argument tuple, at most ``limiter``'s tokens at a time. Returns, in
    order, each result or the ``VerificationFailed`` it raised (see `_first_failure_raised`)."""
    results: list = [None] * len(jobs)

    async def one(k: int) -> None:
        async with limiter:
            try:
                results[k] = await _verify(*jobs[k])
            except verify.VerificationFailed as exc:
                results[k] = exc

    async with trio.open_nursery() as nursery:
        for k in range(len(jobs)):
            nursery.start_soon(one, k)
    return results


def _first_failure_raised(results: list) -> list[tuple[float, tuple[FrameHashes, ...]]]:
    for r in results:
        if isinstance(r, verify.VerificationFailed):
            raise r
    return results


async def _verify(ffmpeg: str, part: Path, name: str, reference: verify.Reference,
                  info: MediaInfo, params: VariationParams,
                  times: list[float]) -> tuple[float, tuple[FrameHashes, ...]]:
    expected = expected_duration(info.duration, params)
    checked = await trio.to_thread.run_sync(
        lambda: verify.check_file(part, reference, expected, params.speed, name=name)
    )
    tap = distinct.tap_args(distinct.output_times(times, params.speed)) if times else ()
    raw = await verify.decode(ffmpeg, part, tap, has_audio=checked.info.has_audio, name=name)
    hashes: tuple[FrameHashes, ...] = ()
    if tap:
        # Off the event loop: the first hash of a process also imports scipy (~0.25 s).
        hashes = tuple(await trio.to_thread.run_sync(
            lambda: distinct.frame_hashes(distinct.thumbnails(raw))
        ))
    return checked.info.duration, hashes


def _read_thumbnails(path: Path | None) -> list:
    if path is None:
        return []
    try:
        return distinct.thumbnails(path.read_bytes())
    except FileNotFoundError:
        return []


def _reroll_path(part: Path, attempt: int) -> Path:
    # "v03.mp4.part" -> "v03.reroll1.mp4.part": still a part file, next to the first render.
    stem = part.name.split(".", 1)[0]
    return part.with_name(f"{stem}.reroll{attempt}.mp4.part")


def _unlink_quiet(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
