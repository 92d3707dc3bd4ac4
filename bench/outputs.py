"""Comparing what the benchmark's runs made: encode quality (SSIM against the frames each
encoder was given) and whether the runs wrote byte-identical variations."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.media.effects import VariationParams
from pipeline.media.filters import video_filter

from . import media
from .machine import log
from .report import ROW_FLOOR, ROW_HTTP, ROW_MAKE, Timing

if TYPE_CHECKING:
    from .run import Bench


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(1 << 20):
            h.update(data)
    return h.hexdigest()


def quality_ours(b: Bench, t: Timing) -> None:
    """SSIM of each output of ``t`` (``meta["pairs"]``: file, params, seed label) against the
    frames its encoder was given."""
    assert b.info is not None
    w, h = b.info.display_width, b.info.display_height
    t.ssim = []
    for k, (path, params, _) in enumerate(t.meta["pairs"]):
        log(f"SSIM: {path.parent.name}/{path.name} ({k + 1}/{len(t.meta['pairs'])})")
        t.ssim.append(media.ssim(b.project, path, b.clip,
                                 video_filter(params, w, h, b.info.display_sar)))


def quality_baseline(b: Bench, t: Timing) -> None:
    ffmpeg, params = t.meta["baseline"]
    t.ssim = []
    for k, (p, out) in enumerate(zip(params, t.outputs, strict=True)):
        log(f"SSIM: baseline {out.name} ({Path(ffmpeg).name}, {k + 1}/{len(params)})")
        t.ssim.append(media.ssim(ffmpeg, out, b.clip, p.reference_chain()))


def http_is_floor(b: Bench) -> bool:
    R = b.results.render
    return [sha256(p) for p, _, _ in R[ROW_HTTP].meta["pairs"]] == [
        sha256(p) for p in R[ROW_FLOOR].outputs]


def compare_outputs(b: Bench) -> bool:
    """Whether the HTTP run, ``make`` and the floor produced byte-identical variations."""
    R, r = b.results.render, b.results
    http, make, fl = R[ROW_HTTP], R[ROW_MAKE], R[ROW_FLOOR]
    h = [sha256(p) for p, _, _ in http.meta["pairs"]]
    m = [sha256(p) for p, _, _ in make.meta["pairs"]]
    f = [sha256(p) for p in fl.outputs]
    rerolls = sum(1 for _, _, seed in http.meta["pairs"] if "reroll" in seed)
    r.notes.append(
        f"Outputs: HTTP ZIP vs `make` ZIP {'byte-identical' if h == m else 'DIFFERENT'}; "
        f"vs the floor's files {'byte-identical' if h == f else 'different'}"
        + (f" ({rerolls} variation(s) re-rolled by the distinctness check, each re-roll is one "
           "more FFmpeg run)" if rerolls else "") + ".")
    return h == m


def unzip_outputs(zip_path: Path, into: Path,
                  ) -> tuple[list[tuple[Path, VariationParams, str]], list[dict]]:
    """The ZIP's variations, extracted: (file, parameters, seed label) in manifest order, and
    the manifest's entries for them."""
    with zipfile.ZipFile(zip_path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        out = []
        for entry in manifest["variations"]:
            path = Path(zf.extract(entry["file"], into))
            out.append((path, VariationParams.from_dict(entry["params"]), entry.get("seed") or ""))
    return out, manifest["variations"]
