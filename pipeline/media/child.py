"""FFmpeg child processes that die with the service, even when it is killed with ``kill -9``.

Linux's ``PR_SET_PDEATHSIG`` (``ffmpeg.child_options``) signals a child when the *thread* that
forked it ends, not the process. ``trio.run_process`` forks from a worker thread of trio's
cache, which ends after 10 idle seconds: the signal would then kill a render in the middle.
So the children here are forked from the thread running the event loop, which lives as long as
the service (a fork takes about a millisecond there), and are then driven with trio's public
low-level parts: ``FdStream`` for the pipes and a pidfd for the exit.

Resource handling: ``open_child`` returns a `Child` whose pipes the caller closes (``aclose``);
``run_child`` owns its child completely: on cancellation it terminates, waits, kills and always
reaps it, shielded, like ``trio.run_process``'s default ``deliver_cancel``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from pipeline.media.ffmpeg import child_options

# How long a child gets after SIGTERM before SIGKILL when its owner is cancelled.
TERMINATE_GRACE = 5.0


@dataclass(frozen=True)
class Finished:
    """What `run_child` returns: the exit status and everything the child wrote."""

    returncode: int
    stdout: bytes
    stderr: bytes


class Child:
    """A running child with trio streams on its piped stdin/stdout/stderr (``None`` if not piped)."""

    def __init__(self, popen: subprocess.Popen, stdin: trio.lowlevel.FdStream | None,
                 stdout: trio.lowlevel.FdStream | None, stderr: trio.lowlevel.FdStream | None):
        self._popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    @property
    def returncode(self) -> int | None:
        """The exit status once `wait` returned (negative: killed by that signal)."""
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait for the child to exit and reap it; returns its exit status."""
        if self._popen.returncode is not None:
            return self._popen.returncode
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (kernel < 5.3): poll, off the event loop
            return await trio.to_thread.run_sync(self._popen.wait, abandon_on_cancel=True)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        return self._popen.wait()

    def terminate(self) -> None:
        if self._popen.returncode is None:
            self._popen.terminate()

    def kill(self) -> None:
        if self._popen.returncode is None:
            self._popen.kill()

    async def aclose(self) -> None:
        """Close our ends of the pipes (the child may still run)."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                await stream.aclose()


async def open_child(command: Sequence[str], *, stdin: bool = False, stdout: bool = False,
                     stderr: bool = False) -> Child:
    """Start ``command`` (an argument list, never a shell) with the named streams piped and the
    rest on ``/dev/null``; the child dies with this process (see the module docstring)."""
    pipes: list[tuple[int, int]] = []
    try:
        stdin_pipe = _pipe(pipes) if stdin else None
        stdout_pipe = _pipe(pipes) if stdout else None
        stderr_pipe = _pipe(pipes) if stderr else None
        popen = subprocess.Popen(
            list(command),
            stdin=stdin_pipe[0] if stdin_pipe else subprocess.DEVNULL,
            stdout=stdout_pipe[1] if stdout_pipe else subprocess.DEVNULL,
            stderr=stderr_pipe[1] if stderr_pipe else subprocess.DEVNULL,
            **child_options(),
        )
    except BaseException:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        raise
    # The child has its own copies now; keep only our ends.
    if stdin_pipe:
        os.close(stdin_pipe[0])
    for p in (stdout_pipe, stderr_pipe):
        if p:
            os.close(p[1])
    return Child(
        popen,
        trio.lowlevel.FdStream(stdin_pipe[1]) if stdin_pipe else None,
        trio.lowlevel.FdStream(stdout_pipe[0]) if stdout_pipe else None,
        trio.lowlevel.FdStream(stderr_pipe[0]) if stderr_pipe else None,
    )


async def run_child(command: Sequence[str]) -> Finished:
    """Run ``command`` to its end, collecting its stdout and stderr.

    On cancellation the child gets SIGTERM, then SIGKILL after ``TERMINATE_GRACE``, and is
    always waited for before ``Cancelled`` propagates.
    """
    child = await open_child(command, stdout=True, stderr=True)
    out, err = bytearray(), bytearray()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, child.stdout, out)
            nursery.start_soon(_collect, child.stderr, err)
            await child.wait()
    finally:
        with trio.CancelScope(shield=True):
            await stop_child(child, TERMINATE_GRACE)
            await child.aclose()
    return Finished(child.returncode if child.returncode is not None else -1, bytes(out), bytes(err))


async def stop_child(child: Child, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always waits. Shielded."""
    with trio.CancelScope(shield=True):
        if child.returncode is not None:
            return
        child.terminate()
        with trio.move_on_after(grace):
            await child.wait()
            return
        child.kill()
        await child.wait()


async def _collect(stream: trio.lowlevel.FdStream | None, into: bytearray) -> None:
    if stream is None:
        return
    async for chunk in stream:
        into += chunk


def _pipe(pipes: list[tuple[int, int]]) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pipes.append((read_end, write_end))
    return read_end, write_end
