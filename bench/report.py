"""The benchmark's results and their Markdown tables. Pure: no I/O except `write_docs`.

A measurement that did not run is a ``str`` (the reason) in place of its value, so every table
always has every row.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .machine import FFmpegBinary, Machine
from .media import Ssim

SPEED_GOAL = 3.5  # baseline / ours, at least
OVERHEAD_GOAL = 1.15  # ours / floor, at most
RSS_GOAL_MB = 150.0  # server peak RSS while streaming, below

# Row labels (the smoke test looks for them).
ROW_BASELINE_HOST = "baseline, host FFmpeg"
ROW_BASELINE_PROJECT = "baseline, project FFmpeg"
ROW_HTTP = "ours, HTTP API end to end"
ROW_MAKE = "ours, `video-refresher make`"
ROW_FLOOR = "floor, bare FFmpeg command"
ROW_DD = "disk write: `dd` 2 GB, `conv=fdatasync`"
ROW_CAT_COLD = "disk read: `cat` 2 GB > /dev/null, cold"
ROW_CAT_WARM = "disk read: `cat` 2 GB > /dev/null, warm"
ROW_UPLOAD = "upload: `POST /api/jobs`, 2 GB file"
ROW_DOWNLOAD = "download: `GET /api/jobs/{id}/download`"
ROW_TUS = "upload: tus `PATCH /api/uploads/{id}`, 2 GB file"
GOAL_SPEED_HOST = "speed: baseline (host FFmpeg) / ours (HTTP)"
GOAL_SPEED_PROJECT = "speed: baseline (project FFmpeg) / ours (HTTP)"
GOAL_SPEED_MAKE = "speed: baseline (host FFmpeg, else project) / ours (make)"
GOAL_OVERHEAD_HTTP = "overhead: ours (HTTP) / floor"
GOAL_OVERHEAD_MAKE = "overhead: ours (make) / floor"
GOAL_QUALITY = "encode quality: SSIM Y of ours ≥ baseline"
GOAL_RSS_UPLOAD = "server peak RSS, 2 GB upload"
GOAL_RSS_TUS = "server peak RSS, 2 GB tus upload"
GOAL_RSS_DOWNLOAD = "server peak RSS, ZIP download"

RENDER_ROWS = (ROW_BASELINE_HOST, ROW_BASELINE_PROJECT, ROW_HTTP, ROW_MAKE, ROW_FLOOR)
IO_ROWS = (ROW_DD, ROW_CAT_COLD, ROW_CAT_WARM, ROW_UPLOAD, ROW_TUS, ROW_DOWNLOAD)
GOAL_ROWS = (GOAL_SPEED_HOST, GOAL_SPEED_PROJECT, GOAL_SPEED_MAKE, GOAL_OVERHEAD_HTTP,
             GOAL_OVERHEAD_MAKE, GOAL_QUALITY, GOAL_RSS_UPLOAD, GOAL_RSS_TUS, GOAL_RSS_DOWNLOAD)


@dataclass
class Timing:
    """One timed render run (the best of its repeats)."""

    wall: float
    cpu: float | None  # user + sys of every process that did the work
    load: float  # 1-minute load average when it started
    out_bytes: int  # the outputs' total (the ZIP's size for the two ZIP-producing runs)
    # CPU time other processes (not this benchmark, its server or their FFmpeg) took while it
    # ran, divided by its wall time: how many cores the rest of the machine was using.
    others: float | None = None
    ssim: list[Ssim] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)  # every repeat
    note: str = ""
    outputs: list[Path] = field(default_factory=list, repr=False)  # files of the best run
    meta: dict = field(default_factory=dict, repr=False)  # what produced them, for SSIM

    def ssim_y(self) -> float | None:
        return statistics.fmean(s.y for s in self.ssim) if self.ssim else None


@dataclass
class Transfer:
    """One streamed transfer (or a disk reference)."""

    nbytes: int
    seconds: float
    peak_rss_mb: float | None = None
    note: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class SweepRow:
    label: str
    timing: Timing


@dataclass
class Results:
    size: str
    seconds: float
    fps: int
    n: int
    seed: str
    preset: str
    repeat: int
    quick: bool
    machine: Machine
    project: FFmpegBinary
    host: FFmpegBinary
    started_at: str
    load_start: str
    load_end: str = ""
    clip_bytes: int = 0
    render: dict[str, Timing | str] = field(default_factory=dict)
    io: dict[str, Transfer | str] = field(default_factory=dict)
    sweep: list[SweepRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.size}, {self.seconds:g} s, {self.fps} fps, N={self.n}"


# -- formatting -------------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if x is None else f"{x:.{digits}f}{suffix}"


def _ratio(a: Timing | str | None, b: Timing | str | None) -> float | None:
    if isinstance(a, Timing) and isinstance(b, Timing) and b.wall > 0:
        return a.wall / b.wall
    return None


def _cpu_ratio(a: Timing | str | None, b: Timing | str | None) -> float | None:
    if isinstance(a, Timing) and isinstance(b, Timing) and a.cpu and b.cpu:
        return a.cpu / b.cpu
    return None


def _ratios(a: Timing | str | None, b: Timing | str | None, digits: int = 2) -> str:
    wall, cpu = _ratio(a, b), _cpu_ratio(a, b)
    return f"{_f(wall, digits, '×')} wall" + (f" ({cpu:.{digits}f}× CPU)" if cpu is not None else "")


def _ssim_cell(t: Timing) -> str:
    if not t.ssim:
        return "–"
    ys = [s.y for s in t.ssim]
    return f"{statistics.fmean(ys):.4f} ({min(ys):.4f})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_table(r: Results) -> list[str]:
    floor = r.render.get(ROW_FLOOR)
    host = r.render.get(ROW_BASELINE_HOST)
    proj = r.render.get(ROW_BASELINE_PROJECT)
    lines = [
        _row(["run", "wall s", "CPU s", "load", "others", "baseline host / this",
              "baseline project / this", "this / floor", "outputs MB", "SSIM Y mean (min)",
              "notes"]),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in RENDER_ROWS:
        t = r.render.get(name, "not run")
        if isinstance(t, str):
            lines.append(_row([name, "–", "–", "–", "–", "–", "–", "–", "–", "–", t]))
            continue
        lines.append(_row([
            name, _f(t.wall), _f(t.cpu, 1), _f(t.load), _f(t.others), _f(_ratio(host, t), 2, "×"),
            _f(_ratio(proj, t), 2, "×"), _f(_ratio(t, floor), 2, "×"),
            _f(t.out_bytes / 1e6, 1), _ssim_cell(t), t.note,
        ]))
    return lines


def _goal(name: str, target: str, measured: str, met: bool | None, why: str = "") -> str:
    verdict = "–" if met is None else ("**met**" if met else "**missed**")
    return _row([name, target, measured if met is not None else (why or "not measured"), verdict])


def goal_table(r: Results) -> list[str]:
    R = r.render
    http, make, floor = R.get(ROW_HTTP), R.get(ROW_MAKE), R.get(ROW_FLOOR)
    host, proj = R.get(ROW_BASELINE_HOST), R.get(ROW_BASELINE_PROJECT)
    base = host if isinstance(host, Timing) else proj
    lines = [_row(["goal", "target", "measured", "result"]), "|---|---|---|---|"]

    def speed(name: str, a, b) -> None:
        x = _ratio(a, b)
        why = a if isinstance(a, str) else (b if isinstance(b, str) else "")
        lines.append(_goal(name, f"≥ {SPEED_GOAL}×", _ratios(a, b),
                           None if x is None else x >= SPEED_GOAL, why))

    def overhead(name: str, a) -> None:
        x = _ratio(a, floor)
        why = a if isinstance(a, str) else (floor if isinstance(floor, str) else "")
        lines.append(_goal(name, f"≤ {OVERHEAD_GOAL}×", _ratios(a, floor, 3),
                           None if x is None else x <= OVERHEAD_GOAL, why))

    speed(GOAL_SPEED_HOST, host, http)
    speed(GOAL_SPEED_PROJECT, proj, http)
    speed(GOAL_SPEED_MAKE, base, make)
    overhead(GOAL_OVERHEAD_HTTP, http)
    overhead(GOAL_OVERHEAD_MAKE, make)

    ours_y = http.ssim_y() if isinstance(http, Timing) else None
    bases = [(n, t.ssim_y()) for n, t in ((ROW_BASELINE_HOST, host), (ROW_BASELINE_PROJECT, proj))
             if isinstance(t, Timing) and t.ssim_y() is not None]
    if ours_y is not None and bases:
        measured = f"ours {ours_y:.4f} vs baseline " + ", ".join(
            f"{y:.4f} ({'host' if n == ROW_BASELINE_HOST else 'project'})" for n, y in bases)
        lines.append(_goal(GOAL_QUALITY, "ours ≥ baseline", measured,
                           all(ours_y >= y for _, y in bases)))
    else:
        lines.append(_goal(GOAL_QUALITY, "ours ≥ baseline", "", None, "not measured"))

    for name, key in ((GOAL_RSS_UPLOAD, ROW_UPLOAD), (GOAL_RSS_TUS, ROW_TUS),
                      (GOAL_RSS_DOWNLOAD, ROW_DOWNLOAD)):
        t = r.io.get(key, "not run")
        if isinstance(t, Transfer) and t.peak_rss_mb is not None:
            lines.append(_goal(name, f"< {RSS_GOAL_MB:.0f} MB",
                               f"{t.peak_rss_mb:.0f} MB ({t.nbytes / 1e9:.2f} GB)",
                               t.peak_rss_mb < RSS_GOAL_MB))
        else:
            lines.append(_goal(name, f"< {RSS_GOAL_MB:.0f} MB", "", None,
                               t if isinstance(t, str) else "not measured"))
    return lines


def io_table(r: Results) -> list[str]:
    write = r.io.get(ROW_DD)
    cold, warm = r.io.get(ROW_CAT_COLD), r.io.get(ROW_CAT_WARM)
    lines = [_row(["transfer", "GB", "seconds", "MB/s", "vs disk", "server peak RSS MB", "notes"]),
             "|---|---:|---:|---:|---:|---:|---|"]
    for name in IO_ROWS:
        t = r.io.get(name, "not run")
        if isinstance(t, str):
            lines.append(_row([name, "–", "–", "–", "–", "–", t]))
            continue
        read = warm if isinstance(warm, Transfer) else cold
        ref = {ROW_UPLOAD: write, ROW_TUS: write, ROW_DOWNLOAD: read}.get(name)
        vs = (f"{t.mb_per_s / ref.mb_per_s:.2f}× of {ref.mb_per_s:.0f}"
              if isinstance(ref, Transfer) else "–")
        lines.append(_row([name, f"{t.nbytes / 1e9:.2f}", _f(t.seconds), f"{t.mb_per_s:.0f}", vs,
                           _f(t.peak_rss_mb, 0), t.note]))
    return lines


def sweep_table(r: Results) -> list[str]:
    if not r.sweep:
        return []
    first = r.sweep[0].timing
    base = r.render.get(ROW_BASELINE_HOST)
    if not isinstance(base, Timing):
        base = r.render.get(ROW_BASELINE_PROJECT)
    lines = [_row(["render command", "wall s", "CPU s", "load", "others", "vs first row",
                   "baseline / this", "outputs MB", "SSIM Y mean (min)"]),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r.sweep:
        t = row.timing
        lines.append(_row([row.label, _f(t.wall), _f(t.cpu, 1), _f(t.load), _f(t.others),
                           _ratios(t, first), _ratios(base, t), _f(t.out_bytes / 1e6, 1),
                           _ssim_cell(t)]))
    return lines


def render(r: Results) -> str:
    m = r.machine
    host = (f"`{r.host.version}` (`{r.host.path}`)" if r.host.path else "none") + (
        f": {r.host.note}" if r.host.note else "")
    out = [
        f"## Results: {r.label}" + (" (`--quick`)" if r.quick else ""),
        "",
        f"- Run: {r.started_at}, repeats per timing: {r.repeat} (best wall time kept).",
        f"- Machine: {m.cores} cores, {m.cpu_model}, {m.memory_gb:g} GB RAM, Linux {m.kernel}, "
        f"Python {m.python}; work folder on {m.disk}.",
        f"- Load average (1 / 5 / 15 min): {r.load_start} at the start, "
        f"{r.load_end or '?'} at the end. Columns: `load`, the 1-minute load average as each "
        "run began (it includes this benchmark's own previous step); `others`, the cores that "
        "processes outside the benchmark kept busy during the run (0.00 = a quiet machine).",
        f"- FFmpeg: project `{r.project.version}` (`{r.project.path}`); host {host}.",
        f"- Source: `testsrc2` + 440 Hz sine, {r.size} {r.fps} fps {r.seconds:g} s, H.264 + AAC, "
        f"{r.clip_bytes / 1e6:.1f} MB. Ours: seed `{r.seed}`, encoder `{r.preset}`, "
        "encoder and filter threads as the runner chooses (`encoder.encoder_threads`, "
        "`encoder.filter_threads`). The floor is built "
        "from the HTTP run's manifest (each variation's `graph` and `encoderArgs`, `bench/bare.py`).",
        "",
        "### Render",
        "",
        *render_table(r),
        "",
        "### Goals",
        "",
        *(["A smoke run: on a clip this small, process start-up and the fixed cost per video outweigh the "
           "rendering, so these verdicts say nothing about the goals.", ""] if r.quick else []),
        *goal_table(r),
        "",
        "### Streaming I/O",
        "",
        *io_table(r),
    ]
    if r.sweep:
        out += ["", "### Render command variants: quality profile, threads, effects "
                "(same seed, frames tapped)", "", *sweep_table(r)]
    if r.notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"


# -- docs/benchmarks.md ------------------------------------------------------------------------------

DOC_HEADER = """# Benchmarks

Generated by `python -m bench --write-docs` (see README, "Benchmark"). Each run replaces only its
own block below (keyed by clip size, length and N); the text outside the blocks is kept.
"""


def block_key(r: Results) -> str:
    key = f"{r.size}-{r.seconds:g}s-{r.fps}fps-n{r.n}" + ("-quick" if r.quick else "")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def write_docs(path: Path, r: Results, text: str) -> None:
    """Put ``text`` into ``path`` between this run's markers, replacing an earlier block."""
    key = block_key(r)
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else DOC_HEADER
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
