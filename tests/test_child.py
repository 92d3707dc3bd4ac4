"""FFmpeg children (pipeline/media/child.py) die with the service, even on ``kill -9``, and live as long
as it does otherwise."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

from pipeline.media.child import open_child, run_child, stop_child
from pipeline.media.ffmpeg import find_ffmpeg
from tests.server import ROOT, process_alive

# An FFmpeg that runs for a minute and writes nothing to its pipes (no progress to fail on).
QUIET = [find_ffmpeg(), "-nostdin", "-v", "quiet", "-re", "-f", "lavfi", "-i",
         "testsrc=size=64x64:rate=10", "-t", "60", "-f", "null", "-"]


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["open_child", "run_child"])
def test_children_die_when_the_service_is_killed(how):
    # A parent that starts FFmpeg as the runner (open_child) or the verification (run_child)
    # does, prints its pid, then waits to be killed.
    script = textwrap.dedent(f"""
        import sys, trio
        import pipeline.media.child as child
        QUIET = {QUIET!r}

        async def main():
            if {how!r} == "open_child":
                c = await child.open_child(QUIET, stdin=True, stdout=True, stderr=True)
                print(c.pid, flush=True)
            else:
                async with trio.open_nursery() as n:
                    n.start_soon(child.run_child, QUIET)
                    await trio.sleep(0.5)
                    print(open("/proc/self/task/" + str(__import__("os").getpid()) + "/children")
                          .read().split()[0], flush=True)
                    await trio.sleep_forever()
            await trio.sleep_forever()

        trio.run(main)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = int(parent.stdout.readline())
        assert process_alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_dead(pid, 2.0), "FFmpeg outlived the killed service"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def test_a_child_outlives_trio_s_idle_worker_threads():
    # The kernel signals a child when the thread that forked it ends. trio's worker threads end
    # after 10 idle seconds: a child forked from one of them would be killed mid-render.
    child = await open_child(QUIET, stdin=True, stdout=True, stderr=True)
    try:
        await trio.sleep(11.5)
        assert child.returncode is None and process_alive(child.pid)
    finally:
        await stop_child(child, 2.0)
        await child.aclose()
    assert child.returncode is not None


async def test_run_child_collects_output_and_reaps_on_cancel():
    done = await run_child([find_ffmpeg(), "-hide_banner", "-version"])
    assert done.returncode == 0 and done.stdout.startswith(b"ffmpeg version")
    pids = []
    with trio.move_on_after(1.0):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_child, QUIET)
            await trio.sleep(0.5)
            pids = [int(p) for p in Path("/proc/self/task").joinpath(
                str(__import__("os").getpid()), "children").read_text().split()]
    assert pids and not any(process_alive(p) for p in pids)
