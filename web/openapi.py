"""The OpenAPI document of the HTTP API, served at ``/api/openapi.json`` (public).

Quart-Schema builds it from the app's routes; the response shapes are the pydantic models of
``web.models``, the very classes ``web.views`` fills to make each body. The views stay plain:
``install_openapi`` attaches the documentation to the registered view functions from the
``_DOCS`` table, and a small provider subclass adds what the decorators cannot say (summaries,
error responses, non-JSON bodies, public routes). The upload is documented as
``multipart/form-data`` but still parsed by our streaming parser (``web.uploads``), never by
Quart-Schema.

Error handling: a ``RequestSchemaValidationError`` (a view validated with Quart-Schema) answers
400 in the API's JSON error shape, not Quart-Schema's HTML page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field
from quart_schema import (
    DataSource,
    QuartSchema,
    RequestSchemaValidationError,
    document_querystring,
    document_request,
    document_response,
    hide,
)
from quart_schema.openapi import OpenAPIProvider

import pipeline

from .errors import error_response
from .jobs import MAX_WAIT
from .models import ApiKey, ApiKeyList, Error, Health, Job, JobCreated, JobList, Queue, Token

OPENAPI_PATH = "/api/openapi.json"


# -- request shapes (responses: web.models) ----------------------------------------------------


class AuthRequest(BaseModel):
    password: str


class KeyRequest(BaseModel):
    name: str = Field(description="What the key is for (1 to 100 characters).")


class UploadForm(BaseModel):
    videos: list[bytes] = Field(description="1 to VR_MAX_FILES MP4/MOV files (repeat the field).")
    name: str | None = Field(None, max_length=120, description=(
        "The job's name (history, the ZIP's file name); default: the first file's name and how "
        "many more."))
    variations: int = Field(5, ge=1, le=20, description="Variations per video.")
    seed: str | None = Field(None, max_length=64, description="Seed for reproducible variations.")
    effects: str | None = Field(None, description=(
        "Comma list of effect families to turn off (-zoom, -color, -noise, -speed, -mirror, "
        "-audio) or on (+rotation, +hue, +pitch: off by default), e.g. -mirror,+rotation."))


class JobQuery(BaseModel):
    wait: float | None = Field(None, ge=0, le=MAX_WAIT, description=(
        "Seconds to wait for the job to end (completed, failed, cancelled, expired or "
        "deleted): the answer comes at its end, after this long, or when the server stops, "
        "whichever is first. 0 or absent: at once."))


class DownloadQuery(BaseModel):
    token: str | None = Field(None, description="The token, for plain links (instead of the header).")


class FileQuery(DownloadQuery):
    download: str | None = Field(None, description="Any value: send as an attachment, to save.")


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Doc:
    summary: str
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    request: type[BaseModel] | None = None
    source: DataSource = DataSource.JSON
    query: type[BaseModel] | None = None
    public: bool = False
    # Non-JSON success bodies: status -> (media type, schema).
    media: dict[int, tuple[str, dict]] = field(default_factory=dict)


_AUTH = {401: Error}
_DOCS: dict[str, _Doc] = {
    "jobs.health": _Doc("Service health (database, data dir, FFmpeg)", {200: Health, 503: Health},
                   public=True),
    "jobs.login": _Doc("Log in with the team password", {200: Token, 400: Error, 401: Error, 429: Error},
                  request=AuthRequest, public=True),
    "jobs.logout": _Doc("Log out: the login token sent is refused from now on",
                        {204: None, 400: Error, **_AUTH}),
    "jobs.list_jobs": _Doc("List jobs, newest first", {200: JobList, **_AUTH}),
    "jobs.create_job": _Doc(
        "Upload videos and queue a job (multipart), or queue one from finished resumable uploads "
        '(JSON {"uploads": [ids], "variations", "effects", "name", "seed"})',
        {202: JobCreated, 400: Error, **_AUTH, 404: Error, 408: Error, 409: Error, 413: Error,
         415: Error, 422: Error, 507: Error},
        request=UploadForm, source=DataSource.FORM_MULTIPART),
    "jobs.get_job": _Doc("One job with its videos and outputs; ?wait=S answers when it ends "
                         f"(at most S seconds, up to {MAX_WAIT:g})", {200: Job, 400: Error, **_AUTH,
                                                            404: Error}, query=JobQuery),
    "delivery.download": _Doc(
        "Download the job's ZIP (one folder per source, manifest.json)",
        {**_AUTH, 404: Error, 409: Error, 410: Error}, query=DownloadQuery,
        media={200: ("application/zip", {"type": "string", "format": "binary"})}),
    "files.output_file": _Doc(
        "One variation's MP4 (n = variation number); Range gives 206, ?download=1 an attachment",
        {**_AUTH, 404: Error, 410: Error}, query=FileQuery,
        media={200: ("video/mp4", {"type": "string", "format": "binary"}),
               206: ("video/mp4", {"type": "string", "format": "binary"})}),
    "files.output_preview": _Doc(
        "A JPEG contact strip of frames of one variation", {**_AUTH, 404: Error, 410: Error},
        query=DownloadQuery, media={200: ("image/jpeg", {"type": "string", "format": "binary"})}),
    "files.video_preview": _Doc(
        "A JPEG contact strip of the source, at the moments its variations' strips show",
        {**_AUTH, 404: Error, 409: Error, 410: Error}, query=DownloadQuery,
        media={200: ("image/jpeg", {"type": "string", "format": "binary"})}),
    "delivery.cancel": _Doc("Cancel a job (finished videos are kept)",
                            {202: Job, **_AUTH, 404: Error, 409: Error}),
    "delivery.cancel_one": _Doc("Cancel one video of a job (the others go on)",
                                {202: Job, **_AUTH, 404: Error, 409: Error}),
    "delivery.retry": _Doc("Retry a failed, interrupted or cancelled video",
                           {202: Job, **_AUTH, 404: Error, 409: Error, 410: Error}),
    "delivery.delete": _Doc("Delete a job, its files and rows", {204: None, **_AUTH, 404: Error}),
    "queue.queue": _Doc("The render queue: paused, queued, running, workers", {200: Queue, **_AUTH}),
    "queue.pause": _Doc("Pause the queue (running renders finish, nothing new starts; kept "
                        "across restarts)", {200: Queue, **_AUTH}),
    "queue.resume": _Doc("Resume the queue", {200: Queue, **_AUTH}),
    "queue.video_log": _Doc(
        "A video's log: every FFmpeg command line and its stderr, by attempt",
        {**_AUTH, 404: Error}, media={200: ("text/plain", {"type": "string"})}),
    "keys.create_key": _Doc("Make an API key (shown once; needs a login, not a key)",
                            {201: ApiKey, 400: Error, **_AUTH, 403: Error}, request=KeyRequest),
    "keys.list_keys": _Doc("List API keys (no secrets; needs a login)",
                           {200: ApiKeyList, **_AUTH, 403: Error}),
    "keys.delete_key": _Doc("Revoke an API key (needs a login)",
                            {204: None, **_AUTH, 403: Error, 404: Error}),
    "resumable.collection": _Doc(
        "tus 1.0.0: create a resumable upload (POST: Upload-Length, Upload-Metadata filename; 201 "
        "with Location) or discover the server's tus support (OPTIONS, public)",
        {201: None, 204: None, 400: Error, **_AUTH, 412: Error, 413: Error, 507: Error}),
    "resumable.item": _Doc(
        "tus 1.0.0: HEAD the offset, PATCH bytes at Upload-Offset "
        "(application/offset+octet-stream), DELETE to end the upload",
        {200: None, 204: None, 400: Error, **_AUTH, 404: Error, 408: Error, 409: Error,
         410: Error, 412: Error, 413: Error, 415: Error}),
    "metrics.metrics": _Doc("Aggregate figures in the Prometheus text format", public=True,
                            media={200: ("text/plain", {"type": "string"})}),
}
_HIDDEN = {"ui.index", "ui.ui_file"}


# A rule's variables as OpenAPI's ``{name}``. quart-schema's own pattern lets the converter part
# run across ``>``: ``/jobs/<job_id>/outputs/<int:number>`` became ``/jobs/{number}``.
_RULE_VARIABLE = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")


class _Provider(OpenAPIProvider):
    def generate_methods(self, rule):
        """quart-schema leaves HEAD out everywhere (a GET's automatic twin); the tus route's
        HEAD is its own operation, with no GET beside it."""
        yield from super().generate_methods(rule)
        if "HEAD" in (rule.methods or ()) and "GET" not in rule.methods:
            yield "HEAD"

    def build_paths(self, rule):
        paths, components = super().build_paths(rule)
        right = _RULE_VARIABLE.sub(r"{\1}", rule.rule)
        (operations,) = paths.values()  # one path per rule
        paths = {right: operations}
        doc = _DOCS.get(rule.endpoint)
        if doc is None:
            return paths, components
        for operations in paths.values():
            for op in operations.values():
                op["summary"] = doc.summary
                op["responses"] = dict(op["responses"])
                for status, (media, schema) in doc.media.items():
                    op["responses"][status] = {"description": doc.summary,
                                               "content": {media: {"schema": schema}}}
                for status, model in doc.responses.items():
                    if model is None:
                        op["responses"][status] = {"description": "No content."}
                if doc.public:
                    op["security"] = []
        return paths, components


def install_openapi(app) -> QuartSchema:
    """Document the app's routes and serve the document at ``OPENAPI_PATH``.

    Call it after every route is registered.
    """
    for endpoint, func in app.view_functions.items():
        if endpoint in _HIDDEN:
            hide(func)
            continue
        doc = _DOCS.get(endpoint)
        if doc is None:
            continue
        for status, model in doc.responses.items():
            if model is not None:
                document_response(model, status)(func)
        if doc.request is not None:
            document_request(doc.request, source=doc.source)(func)
        if doc.query is not None:
            document_querystring(doc.query)(func)

    @app.errorhandler(RequestSchemaValidationError)
    async def _invalid(exc: RequestSchemaValidationError):
        return error_response(400, "invalid_request", f"The request is not valid: {exc.validation_error}")

    return QuartSchema(
        app,
        openapi_path=OPENAPI_PATH,
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        openapi_provider_class=_Provider,
        info={"title": "Video Refresher", "version": pipeline.__version__,
              "description": "Upload video creatives, get unique variations back as one ZIP."},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        security=[{"bearer": []}],
    )
