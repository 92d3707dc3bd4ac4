"""The machine and the FFmpeg binaries a benchmark ran on: cores, CPU, memory, load, disk."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.media.ffmpeg import ffmpeg_version

HOST_FFMPEG_HINT = "Debian's FFmpeg 5.1: apt-get install ffmpeg"


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu_model: str
    memory_gb: float
    kernel: str
    python: str
    disk: str  # "<device> (<fs type>), <free> GB free" for the work folder


@dataclass(frozen=True)
class FFmpegBinary:
    path: str | None
    version: str | None
    note: str = ""  # why it is missing, or that it is the project's own binary


def describe(work_dir: Path) -> Machine:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024**2
                break
    except OSError:
        pass
    return Machine(
        cores=os.cpu_count() or 1,
        cpu_model=model,
        memory_gb=round(mem, 1),
        kernel=platform.release(),
        python=platform.python_version(),
        disk=_disk(work_dir),
    )


def _disk(path: Path) -> str:
    path = path.resolve()
    best: tuple[str, str, str] | None = None
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if (path == Path(mnt) or Path(mnt) in path.parents) and (
                best is None or len(mnt) > len(best[1])
            ):
                best = (dev, mnt, fstype)
    except OSError:
        pass
    free = shutil.disk_usage(path).free / 1e9
    where = f"{best[0]} ({best[2]})" if best else "unknown device"
    return f"{where}, {free:.0f} GB free"


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def busy_cpu_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, *, below: float = 0.3, window: float = 5.0, log=None) -> float:
    """Wait (at most ``max_wait`` seconds) until the machine keeps fewer than ``below`` cores busy
    over ``window`` seconds; call it while the benchmark itself is idle. Returns the last reading."""
    deadline = time.monotonic() + max_wait
    waited = False
    while True:
        b0 = busy_cpu_seconds()
        time.sleep(window)
        cores = (busy_cpu_seconds() - b0) / window
        if cores < below or time.monotonic() >= deadline:
            if waited and log:
                log(f"machine {'quiet' if cores < below else 'still busy'}: {cores:.2f} cores busy")
            return cores
        if not waited and log:
            log(f"waiting for a quiet machine: other processes keep {cores:.2f} cores busy")
        waited = True


def tree_cpu_seconds(pid: int, *, include_root: bool = True) -> float | None:
    """CPU seconds used so far by ``pid`` (unless not ``include_root``) and every live process
    below it, all threads; None when ``pid`` is gone."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])))
    if pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p != pid or include_root:
            total += stats[p][1]
        todo.extend(children.get(p, []))
    return total / os.sysconf("SC_CLK_TCK")


def thread_states(pid: int) -> str:
    """What the threads of ``pid`` wait in, e.g. ``67 × futex_do_wait`` (for a stall report)."""
    counts: dict[str, int] = {}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                wchan = (task / "wchan").read_text().strip() or "running"
            except OSError:
                wchan = "?"
            counts[wchan] = counts.get(wchan, 0) + 1
    except OSError:
        return "gone"
    return ", ".join(f"{n} × {w}" for w, n in sorted(counts.items(), key=lambda x: -x[1]))


class Stalled(RuntimeError):
    """A process (tree) made no progress at all for a while; it was stopped."""


class StallWatch:
    """Says when the processes under ``pid`` have used no CPU for ``seconds`` (a deadlock: seen
    with FFmpeg 9's split graph, all threads asleep on futexes, the outputs half written).

    ``children_only`` watches only what ``pid`` started (a server answering status polls keeps
    using a little CPU itself). Any change of the sum counts as progress: a child that ends takes
    its CPU time out of the sum, a new one starts from zero.
    """

    def __init__(self, pid: int, seconds: float, *, children_only: bool = False):
        self.pid, self.seconds, self.include_root = pid, seconds, not children_only
        self._cpu = tree_cpu_seconds(pid, include_root=self.include_root) or 0.0
        self._since = time.monotonic()

    def stalled(self) -> bool:
        cpu = tree_cpu_seconds(self.pid, include_root=self.include_root)
        now = time.monotonic()
        if cpu is None or abs(cpu - self._cpu) > 0.05:
            self._cpu, self._since = (self._cpu if cpu is None else cpu), now
            return False
        return now - self._since > self.seconds


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def load_text() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} / {b:.2f} / {c:.2f}"


def host_ffmpeg(requested: str | None, project: str) -> FFmpegBinary:
    """The host's ``ffmpeg`` (what the original service ran), or why there is none."""
    if not requested:
        return FFmpegBinary(None, None, "host FFmpeg run skipped (--host-ffmpeg '')")
    found = shutil.which(requested)
    if not found:
        return FFmpegBinary(None, None, f"no host `{requested}` on PATH ({HOST_FFMPEG_HINT})")
    try:
        same = os.path.samefile(found, project)
    except OSError:
        same = False
    version = _version(found)
    if version is None:
        return FFmpegBinary(None, None, f"`{found}` does not run as FFmpeg")
    note = "the same binary as the project's" if same else ""
    return FFmpegBinary(found, version, note)


def _version(binary: str) -> str | None:
    try:
        return ffmpeg_version(binary) or None
    except (OSError, subprocess.SubprocessError):
        return None


def project_ffmpeg(binary: str) -> FFmpegBinary:
    return FFmpegBinary(binary, _version(binary))


def log(msg: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
