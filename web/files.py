"""One file at a time: a variation (``/api/jobs/{id}/videos/{vid}/outputs/{n}``, with ``Range``
so a ``<video>`` element can seek in it) and the contact-strip previews of a source and of each
variation. ``n`` is the variation's number (1 for ``…_v01.mp4``), as in the manifest.

Like the ZIP, these accept the token as ``?token=`` (an ``<img>`` or ``<video>`` element cannot
send a header; ``web/app.py``), and answer ``Range`` and ``If-Range`` the same way
(``web/ranges.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import trio
from quart import Blueprint, current_app, request

from pipeline.actors.lifecycle import open_video
from pipeline.media.naming import preview_path, source_preview_path
from pipeline.state.rows import Output, Video
from pipeline.state.states import VideoStatus

from .delivery import content_disposition
from .errors import APIError
from .ranges import file_etag, ranged_response, read_file

bp = Blueprint("files", __name__)
# Previews and variations do not change once written; a client may keep them for a day.
MAX_AGE = 24 * 3600


@bp.get("/api/jobs/<job_id>/videos/<video_id>/outputs/<int:number>")
async def output_file(job_id: str, video_id: str, number: int):
    """The variation's MP4: inline (plays in the page), or ``?download=1`` as an attachment."""
    _, output = await _output(job_id, video_id, number)
    resp = await _send(Path(output.path), "video/mp4")
    if request.args.get("download") not in (None, "", "0", "false"):
        resp.headers["Content-Disposition"] = content_disposition(output.name)
    return resp


@bp.get("/api/jobs/<job_id>/videos/<video_id>/outputs/<int:number>/preview")
async def output_preview(job_id: str, video_id: str, number: int):
    _, output = await _output(job_id, video_id, number)
    return await _send(preview_path(Path(output.path)), "image/jpeg")


@bp.get("/api/jobs/<job_id>/videos/<video_id>/preview")
async def video_preview(job_id: str, video_id: str):
    video = await open_video(current_app.extensions["service"], job_id, video_id)
    if video.status != VideoStatus.COMPLETED or not video.outputs:
        raise APIError(409, "not_ready", "This video has no preview yet: it has not finished.")
    return await _send(source_preview_path(Path(video.outputs[0].path)), "image/jpeg")


async def _output(job_id: str, video_id: str, number: int) -> tuple[Video, Output]:
    video = await open_video(current_app.extensions["service"], job_id, video_id)
    output = next((o for o in video.outputs or () if o.index + 1 == number), None)
    if output is None:
        raise APIError(404, "output_not_found",
                       f"This video has no variation {number}"
                       + ("." if video.status == VideoStatus.COMPLETED else " yet."))
    return video, output


async def _send(path: Path, mimetype: str):
    try:
        st = await trio.to_thread.run_sync(os.stat, path)
    except FileNotFoundError:
        if mimetype == "image/jpeg":  # a strip that was never made (no frames could be taken)
            raise APIError(404, "preview_not_found", "There is no preview of this file.") from None
        raise APIError(410, "files_gone", "This file is no longer on the server.") from None
    resp = ranged_response(st.st_size, file_etag(st), mimetype,
                           lambda start, stop: read_file(path, start, stop),
                           {"Cache-Control": f"private, max-age={MAX_AGE}"})
    resp.timeout = None  # a long video played slowly
    return resp
