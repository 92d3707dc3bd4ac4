"""The runner's verification step: verify every rendered variation, measure how distinct each
one is, and re-roll those that look too much like their source or a sibling.

Order of work for one video, after its FFmpeg render succeeded:

1. Facts about the source (tags, audio tail), and its frames at the content times of
   ``Rendered.taps`` (``distinct.Taps``): the render taps them off its own decode
   (``command.build_render_command(taps=…)``); without them, ``distinct.sample_frames`` decodes
   the start of the source once more.
2. For each output: the cheap file checks (``verify.check_file``), then the decode check:
   by default every packet read and the keyframes and audio decoded (``packets.scan``, tens
   of milliseconds a file), or with ``Rendered.full_decode`` (``VR_VERIFY=full``) every frame
   decoded (``verify.decode``, no tap), one single-threaded FFmpeg per core side by side
   (``verify.decode_command``): on 2 cores, decoding five 5 s 1080p outputs took 1.43-1.49 s
   (2.5-2.6 CPU s) against 1.70-2.02 s (2.7-3.2 CPU s) one after the other with FFmpeg's
   frame threads. Its frames are the ones the render tapped after its effects (or, when that
   file is missing or short, sampled from the output). Each set of frames is hashed (PDQ, 8
   dihedral transforms) and made into a preview strip (``preview.contact_strip``) at once;
   the frames themselves are not kept.
3. Figures (``distinct.DistanceTable``). Each variation with a frame matching its source (PDQ
   distance at most ``match_threshold``), and the later of each sibling pair with a matching
   frame, gets fresh parameters (``effects.reroll_variation``) and is rendered again, all of
   them in one more FFmpeg run (``rerender``, owned by the runner, which taps their frames
   too). A re-rolled output replaces the first one only if it is more distinct
   (``DistanceTable.score``); either way the re-roll is counted. At most ``max_rerolls`` rounds.

Error handling: ``VerificationFailed`` from any output (first render or re-roll) propagates, the
first output's in variation order when several fail; the runner fails the video with its
message. A source whose frames cannot be taken only loses its figures (``None``): the outputs
were verified on their own and are still delivered.

Resource handling: every part file this step creates (re-rolled outputs and their frame taps)
is put on the runner's clean-up stack (``cleanup``, a ``contextlib.ExitStack``) before FFmpeg
writes it, so the runner's clean-up on failure or cancellation removes it; re-rolled parts that
lose, and the re-rolls' frame taps once read, are removed here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import trio

from pipeline.media import distinct, fingerprint, formats, packets, preview, verify
from pipeline.media.distinct import FormatTables, FrameHash, Taps
from pipeline.media.effects import EffectOptions, VariationParams, expected_duration, reroll_variation
from pipeline.media.encoder import usable_cores
from pipeline.media.formats import Placement
from pipeline.media.probe import MediaInfo

# Re-roll rounds per video; each round is one more FFmpeg run for the variations still too close.
MAX_REROLLS = 2

# rerender(params, parts, taps): render ``params`` into ``parts`` (in every format, as
# ``Rendered.parts``) in one FFmpeg run, tapping their frames as ``taps`` says (one per format,
# a single one for one format; ``taps.outputs`` one per variation, no source tap).
Rerender = Callable[[list[VariationParams], list[Path], "Taps | tuple[Taps, ...]"],
                    Awaitable[None]]


@dataclass(frozen=True)
class Variation:
    """One variation after verification: what to commit and record, one file per format
    (``Rendered.placement``, in its order)."""

    params: VariationParams
    parts: tuple[Path, ...]  # the verified files, still ``*.part``, one per format
    seed: str  # the runner's seed label, with ":reroll<N>" once a re-roll replaced it
    duration: float
    distances: tuple[dict | None, ...] = ()  # each file's figures (``DistanceTable.report``)
    hashes: tuple[tuple[FrameHash, ...], ...] = ()  # each file's frames' PDQ
    rerolls: int = 0
    previews: tuple[bytes | None, ...] = ()  # each file's JPEG contact strip

    @property
    def part(self) -> Path:
        """The first format's file (the only one for the source's shape)."""
        return self.parts[0]

    @property
    def distance(self) -> dict | None:
        return self.distances[0] if self.distances else None

    @property
    def preview(self) -> bytes | None:
        return self.previews[0] if self.previews else None


@dataclass(frozen=True)
class Checked:
    """What ``check_outputs`` gives the runner: the slots in variation order, and the source's
    preview strip (``None`` when its frames could not be taken)."""

    variations: list[Variation]
    source_preview: bytes | None


@dataclass(frozen=True)
class Rendered:
    """What one render made, to verify: a part file per output (``command.filter_graph`` 's
    order: variation by variation, each in every format of ``placement``) with the names the
    user sees, the seed labels the manifest records (one per variation), and the frames it
    tapped (``taps``, one per format or a single one for one format; ``None``: sampled from
    the files)."""

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
    taps: Taps | tuple[Taps, ...] | None = None
    # Decode every frame of every output (``verify.decode``, ``VR_VERIFY=full``) instead of
    # reading its packets and decoding its keyframes (``packets.scan``).
    full_decode: bool = False
    placement: Placement = Placement()

    def of(self, i: int) -> slice:
        """Variation ``i`` 's outputs in ``parts`` and ``names``."""
        count = len(self.placement.formats)
        return slice(i * count, (i + 1) * count)


def plan_taps(info: MediaInfo, parts: list[Path] | tuple[Path, ...] = (),
              source: Path | None = None, source_print: Path | None = None) -> Taps:
    """What a render of ``info`` taps: each part's frames to ``distinct.frames_path`` and, when
    ``info`` has sound, its fingerprint to ``fingerprint.print_path``; the source's frames to
    ``source`` and its fingerprint to ``source_print``."""
    taps = Taps.plan(info.duration, info.fps, info.display_width, info.display_height,
                     [distinct.frames_path(p) for p in parts], source)
    if not info.has_audio:
        return taps
    return replace(taps, prints=tuple(fingerprint.print_path(p) for p in parts),
                   source_print=source_print)


def plan_format_taps(info: MediaInfo, placement: Placement, parts: Sequence[Path],
                     sources: Sequence[Path], source_print: Path | None = None,
                     ) -> tuple[Taps, ...]:
    """`plan_taps` for each of ``placement`` 's formats: ``parts`` in ``command.filter_graph``
    's order, the source's frames in format ``k`` to ``sources[k]``; frames of each format's
    size, and the fingerprints (the same sound in every format) off the first format's files."""
    count = len(placement.formats)
    out = []
    for k, fmt in enumerate(placement.formats):
        w, h = (info.display_width, info.display_height) if fmt == formats.SOURCE else \
            formats.output_size(fmt, placement.fit, info.display_width, info.display_height,
                                info.display_sar)
        taps = Taps.plan(info.duration, info.fps, w, h,
                         [distinct.frames_path(p) for p in parts[k::count]], sources[k])
        if k == 0 and info.has_audio:
            taps = replace(taps, prints=tuple(fingerprint.print_path(p) for p in parts[::count]),
                           source_print=source_print)
        out.append(taps)
    return tuple(out)


async def check_outputs(rendered: Rendered, *, rerender: Rerender, cleanup: ExitStack,
                        match_threshold: int = distinct.MATCH_THRESHOLD,
                        max_rerolls: int = MAX_REROLLS) -> Checked:
    """Verify and measure ``rendered``; re-roll as described in the module docstring.

    Every output is measured against the source in its own format (the source's frames
    through the same crop or pad) and against its siblings in that format; a variation is
    re-rolled when any of its formats is too close, and rendered again in all of them.

    ``rerender`` must render into the paths it is given (one FFmpeg run) or raise. The part
    file of every re-roll, and its frame tap, is put on ``cleanup`` (removed when it closes)
    before it is rendered.
    """
    checker = await _Checker.start(rendered)
    slots, source_hashes, source_preview = await checker.first_pass()
    table: FormatTables | None = None
    if source_hashes:
        table = await trio.to_thread.run_sync(
            FormatTables.measure, source_hashes, [s.hashes for s in slots], match_threshold
        )
    for attempt in range(1, max_rerolls + 1):
        if table is None or source_hashes is None:
            break
        low = table.too_close()
        if not low:
            break
        slots, table = await checker.reroll(slots, table, source_hashes, low, attempt,
                                            rerender, cleanup)
    return Checked([
        replace(s, distances=table.report(i, s.rerolls) if table is not None
                else (None,) * len(s.parts))
        for i, s in enumerate(slots)
    ], source_preview)


# Per format: the source's frame hashes, or per variation, per format, its outputs'.
SourceHashes = tuple[tuple[FrameHash, ...], ...]
# What `_Checker._verify` gives for one variation: its duration, and per format the frames'
# hashes and the contact strip.
_Verified = tuple[float, tuple[tuple[FrameHash, ...], ...], tuple[bytes | None, ...]]


@dataclass
class _Checker:
    """One video's verification: its render, the reference facts for each format, the taps
    (one per format), and the decodes' concurrency."""

    rendered: Rendered
    references: tuple[verify.Reference, ...]
    taps: tuple[Taps, ...]
    limiter: trio.CapacityLimiter

    @classmethod
    async def start(cls, rendered: Rendered) -> _Checker:
        reference = await trio.to_thread.run_sync(verify.reference_for, rendered.source,
                                                  rendered.info)
        p, info = rendered.placement, rendered.info
        references = tuple(
            replace(reference, display_width=w, display_height=h) if fmt != formats.SOURCE
            else reference
            for fmt in p.formats
            for w, h in [formats.output_size(fmt, p.fit, info.display_width,
                                             info.display_height, info.display_sar)])
        taps = rendered.taps
        if taps is None:
            taps = plan_format_taps(info, p, rendered.parts, [None] * len(p.formats))
        elif isinstance(taps, Taps):
            taps = (taps,)
        return cls(rendered, references, tuple(taps), trio.CapacityLimiter(usable_cores()))

    async def first_pass(self) -> tuple[list[Variation], SourceHashes | None, bytes | None]:
        """Every output verified and hashed, the source's hashes in each format beside them
        (None when its frames cannot be taken in one of them), and the source's preview strip
        (in its own shape when that is one of the formats, else in the first)."""
        r, taps = self.rendered, self.taps
        source: list = [None] * len(taps)

        async def sample_source(k: int) -> None:
            t = taps[k]
            digest = await self._tapped(t.source, t.size, len(t.times))
            if digest is None:
                if r.placement.formats[k] != formats.SOURCE:
                    return  # only the render can take them through the format's geometry
                digest = await self._sampled(r.source, t.times, t.size)
                if digest is None:
                    return
            source[k] = digest

        n = len(r.variations)
        async with trio.open_nursery() as nursery:
            for k, t in enumerate(taps):
                if t.times:
                    nursery.start_soon(sample_source, k)
            # Failures are raised outside the nursery, so that they are not wrapped in a group.
            results = await self.verify(range(n), r.variations,
                                        [r.parts[r.of(i)] for i in range(n)], self._tap_files())
        checked = _first_failure_raised(results)
        slots = [
            Variation(params=params, parts=tuple(r.parts[r.of(i)]), seed=r.seeds[i],
                      duration=duration, hashes=hashes, previews=strips)
            for i, (params, (duration, hashes, strips))
            in enumerate(zip(r.variations, checked, strict=True))
        ]
        if any(s is None for s in source) or not taps[0].times:
            return slots, None, None
        # The original's strip shows it as it is, when its own shape is among the formats.
        shown = r.placement.formats.index(formats.SOURCE) \
            if formats.SOURCE in r.placement.formats else 0
        return slots, tuple(s[0] for s in source), source[shown][1]

    def _tap_files(self, taps: tuple[Taps, ...] | None = None) -> list[tuple[Path | None, ...]]:
        """Per variation, per format, the file its frames were tapped to (None: not tapped)."""
        taps = taps or self.taps
        n = max((len(t.outputs) for t in taps), default=0) or len(self.rendered.variations)
        return [tuple(t.outputs[i] if i < len(t.outputs) else None for t in taps)
                for i in range(n)]

    async def reroll(self, slots: list[Variation], table: FormatTables,
                     source_hashes: SourceHashes, low: list[int], attempt: int,
                     rerender: Rerender, cleanup: ExitStack,
                     ) -> tuple[list[Variation], FormatTables]:
        """One round: fresh parameters for the slots in ``low``, rendered in one FFmpeg run; a
        re-roll replaces its slot only when it is more distinct."""
        r = self.rendered
        fresh: list[VariationParams] = []
        for i in low:
            fresh.append(reroll_variation(r.job_seed, r.video_index, i + 1, attempt, r.options,
                                          avoid=[s.params for s in slots] + fresh))
        paths = [tuple(_reroll_path(p, attempt) for p in slots[i].parts) for i in low]
        flat = [p for group in paths for p in group]
        taps = tuple(
            replace(t, outputs=tuple(distinct.frames_path(group[k]) for group in paths),
                    source=None, source_print=None,
                    prints=tuple(fingerprint.print_path(group[0]) for group in paths)
                    if t.prints else ())
            for k, t in enumerate(self.taps))
        for path in (*flat, *(o for t in taps for o in t.outputs), *(p for t in taps
                                                                    for p in t.prints)):
            cleanup.callback(_unlink_quiet, path)
        await rerender(fresh, flat, taps[0] if len(taps) == 1 else taps)
        try:
            rechecked = _first_failure_raised(
                await self.verify(low, fresh, paths, self._tap_files(taps)))
        finally:
            for t in taps:
                for tap in t.outputs:
                    await trio.to_thread.run_sync(_unlink_quiet, tap)
        for i, params, group, (duration, hashes, strips) in zip(low, fresh, paths, rechecked,
                                                                strict=True):
            candidate = replace(slots[i], params=params, parts=group, duration=duration,
                                hashes=hashes, previews=strips,
                                seed=f"{r.seeds[i]}:reroll{attempt}")
            trial = slots[:i] + [candidate] + slots[i + 1:]
            trial_table = await trio.to_thread.run_sync(
                table.replaced, i, source_hashes, [s.hashes for s in trial]
            )
            losers = group
            if trial_table.score(i) > table.score(i):
                losers, slots, table = slots[i].parts, trial, trial_table
            slots[i] = replace(slots[i], rerolls=slots[i].rerolls + 1)
            for loser in losers:
                await trio.to_thread.run_sync(_unlink_quiet, loser)
            await trio.to_thread.run_sync(_unlink_quiet, fingerprint.print_path(losers[0]))
        return slots, table

    async def verify(self, slots, variations, parts, frame_files) -> list:
        """`_verify` each variation's parts (named as its slot), all at once: every blocking
        step holds the limiter (one per core), so the checks of one file and the hashing of
        another's frames share the cores to the end, instead of the last variation's steps
        running one after the other on one core. Returns, in order, each result or the
        ``VerificationFailed`` it raised (see `_first_failure_raised`)."""
        jobs = list(zip(slots, variations, parts, frame_files, strict=True))
        results: list = [None] * len(jobs)

        async def one(k: int) -> None:
            try:
                results[k] = await self._verify(*jobs[k])
            except verify.VerificationFailed as exc:
                results[k] = exc

        async with trio.open_nursery() as nursery:
            for k in range(len(jobs)):
                nursery.start_soon(one, k)
        return results

    async def _verify(self, slot: int, params: VariationParams, parts: Sequence[Path],
                      taps: Sequence[Path | None]) -> _Verified:
        """Check and decode one variation's files, one per format, side by side; their hashes
        and preview strips from the frames the render tapped (or sampled from each file)."""
        names = self.rendered.names[self.rendered.of(slot)]
        results: list = [None] * len(parts)

        async def one(k: int) -> None:
            results[k] = await self._verify_file(k, names[k], params, parts[k], taps[k])

        async with trio.open_nursery() as nursery:
            for k in range(len(parts)):
                nursery.start_soon(one, k)
        files = _first_failure_raised(results)
        return files[0][0], tuple(h for _, h, _ in files), tuple(s for _, _, s in files)

    async def _verify_file(self, k: int, name: str, params: VariationParams, part: Path,
                           tap: Path | None
                           ) -> tuple[float, tuple[FrameHash, ...], bytes | None] | Exception:
        """One file checked (`_check`) while its frames are hashed (`_measure`): its duration,
        hashes and strip, or the ``VerificationFailed`` the check raised (returned, so that the
        nursery does not wrap it in a group)."""
        taps = self.taps[k]
        done: dict = {}

        async with trio.open_nursery() as nursery:

            async def check() -> None:
                try:
                    done["duration"] = await self._check(k, name, params, part)
                except verify.VerificationFailed as exc:
                    done["failed"] = exc
                    nursery.cancel_scope.cancel()  # a failed file's figures are not wanted

            async def measure() -> None:
                done["digest"] = await self._measure(params, tap, part, taps)

            nursery.start_soon(check)
            if taps.times:
                nursery.start_soon(measure)
        if "failed" in done:
            return done["failed"]
        return (done["duration"], *done.get("digest", ((), None)))

    async def _check(self, k: int, name: str, params: VariationParams, part: Path) -> float:
        """Verify one file (raises ``VerificationFailed``); its duration. By default the file
        is read once: probed, every packet checked, keyframes and audio decoded
        (``packets.scan``); with ``full_decode`` FFmpeg decodes all of it after."""
        r = self.rendered
        expected = expected_duration(r.info.duration, params)
        read = None if r.full_decode else packets.scan_facts
        checked = await trio.to_thread.run_sync(
            lambda: verify.check_file(part, self.references[k], expected, params.speed,
                                      name=name, read=read),
            limiter=self.limiter)
        if r.full_decode:
            async with self.limiter:
                await verify.decode(r.ffmpeg, part, has_audio=checked.info.has_audio, name=name)
        return checked.info.duration

    async def _measure(self, params: VariationParams, tap: Path | None, part: Path,
                       taps: Taps) -> tuple[tuple[FrameHash, ...], bytes | None]:
        """One file's frame hashes and strip: from its tap, or sampled from the file when the
        tap is missing or short (no figures when that fails too)."""
        digest = await self._tapped(tap, taps.size, len(taps.times))
        if digest is None:
            digest = await self._sampled(part, distinct.output_times(taps.times, params.speed),
                                         taps.size)
        return digest or ((), None)  # it decoded cleanly: only its figures are lost

    async def _sampled(self, path: Path, times: Sequence[float], size: tuple[int, int]
                       ) -> tuple[tuple[FrameHash, ...], bytes | None] | None:
        """The hashes and strip of frames FFmpeg takes from ``path`` at ``times`` (None when it
        cannot), sampled and hashed in one slot of the limiter, so that no more sets of frames
        than cores wait in memory to be hashed."""
        async with self.limiter:
            try:
                frames = await distinct.sample_frames(self.rendered.ffmpeg, path, times, size)
            except distinct.SamplingFailed:
                return None
            return await trio.to_thread.run_sync(_digest, frames)

    async def _tapped(self, tap: Path | None, size: tuple[int, int], count: int
                      ) -> tuple[tuple[FrameHash, ...], bytes | None] | None:
        """The hashes and strip of the ``count`` frames tapped to ``tap``, read and hashed in
        one worker thread; None when the tap is missing or short."""
        def digest() -> tuple[tuple[FrameHash, ...], bytes | None] | None:
            frames = distinct.read_frames_file(tap, size)
            return _digest(frames) if len(frames) >= count else None

        return await trio.to_thread.run_sync(digest, limiter=self.limiter)


def _digest(frames: list[np.ndarray]) -> tuple[tuple[FrameHash, ...], bytes | None]:
    """The frames' PDQ hashes and their contact strip (blocking: a worker thread)."""
    return distinct.frame_hashes(frames), preview.contact_strip(frames) if frames else None


async def with_audio_figures(ffmpeg: str, source: Path, info: MediaInfo,
                             checked: list[Variation], source_print: Path | None = None,
                             ) -> list[Variation]:
    """The verified variations with the audio half of their distinctness figures
    (``fingerprint.audio_figures``: Chromaprint of the source and of each output, as the render
    tapped them to ``source_print`` and ``fingerprint.print_path`` of each part, or else from
    audio-only decodes). Figures that cannot be taken stay None: the outputs are good all
    the same."""
    if not info.has_audio or not any(v.distance for v in checked):
        return checked
    audio = await fingerprint.audio_figures(
        ffmpeg, source, [v.part for v in checked],
        tapped=[fingerprint.print_path(v.part) for v in checked], source_tapped=source_print)
    # Every format of a variation carries the same sound.
    return [replace(v, distances=tuple({**d, "audio": a} if d else d for d in v.distances))
            for v, a in zip(checked, audio, strict=True)]


def _first_failure_raised(results: list) -> list[_Verified]:
    for r in results:
        if isinstance(r, verify.VerificationFailed):
            raise r
    return results


def _reroll_path(part: Path, attempt: int) -> Path:
    # "v03.mp4.part" -> "v03.reroll1.mp4.part": still a part file, next to the first render.
    stem = part.name.split(".", 1)[0]
    return part.with_name(f"{stem}.reroll{attempt}.mp4.part")


def _unlink_quiet(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
