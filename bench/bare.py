"""The benchmark's floor: the bare one-process FFmpeg render of a job's variations, built from
nothing but what its ``manifest.json`` records (each variation's ``graph`` and ``encoderArgs``).
Pure.

It is what the service's own render would be without anything around it: no frame taps, no
verification, no distinctness measure, no HTTP, no database. So it is also the proof that the
manifest is enough to render a variation again by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def split_graph(graph: str) -> tuple[str, str | None]:
    """``"video: <chain> | audio: <chain>"`` (the manifest's ``graph``) → the two chains."""
    video, sep, audio = graph.partition(" | audio: ")
    if not video.startswith("video: "):
        raise ValueError(f"not a manifest graph: {graph[:80]!r}")
    return video.removeprefix("video: "), audio if sep else None


def bare_command(ffmpeg: str, source: Path, width: int, height: int,
                 entries: Sequence[dict], outs: Sequence[Path]) -> list[str]:
    """One FFmpeg process: ``source`` decoded once, scaled to its display size ``width`` ×
    ``height`` as the service does, split into every entry's chains, each output encoded with
    its ``encoderArgs``."""
    if len(entries) != len(outs):
        raise ValueError(f"{len(entries)} manifest entries but {len(outs)} outputs")
    chains = [split_graph(e["graph"]) for e in entries]
    n = len(chains)
    has_audio = chains[0][1] is not None
    parts = [f"[0:V:0]scale={width}:{height}," + (
        f"split={n}" + "".join(f"[vs{i}]" for i in range(n)) if n > 1 else "null[vs0]")]
    parts += [f"[vs{i}]{video}[v{i}]" for i, (video, _) in enumerate(chains)]
    if has_audio:
        parts.append("[0:a:0]" + (f"asplit={n}" + "".join(f"[as{i}]" for i in range(n))
                                  if n > 1 else "anull[as0]"))
        parts += [f"[as{i}]{audio}[a{i}]" for i, (_, audio) in enumerate(chains)]
    args = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
            "-i", f"file:{source}", "-filter_complex", ";".join(parts)]
    for i, (entry, out) in enumerate(zip(entries, outs, strict=True)):
        if not entry.get("encoderArgs"):
            raise ValueError(f"{entry.get('file')}: the manifest records no encoderArgs")
        args += ["-map", f"[v{i}]", *(["-map", f"[a{i}]"] if has_audio else []),
                 *entry["encoderArgs"], f"file:{out}"]
    return args
