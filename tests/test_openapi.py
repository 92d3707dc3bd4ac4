"""The OpenAPI document at ``/api/openapi.json``, and a Schemathesis run against the real server
that generates requests from it (valid token, odd ids, odd form fields, random "videos"): no
response may be a 5xx."""

from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.server import ServerProcess

# Examples per operation: enough to reach the odd corners, small enough for 2 cores.
MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("openapi") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(srv) -> tuple[str, str]:
    # Taken before Schemathesis fuzzes /api/auth (wrong passwords lead to 429 for a minute):
    # one for the fuzzing, which may log it out (DELETE /api/auth), one for after it.
    return srv.token(), srv.token()


@pytest.fixture(scope="module")
def token(tokens) -> str:
    return tokens[1]


@pytest.fixture(scope="module")
def api_schema(srv):
    return schemathesis.openapi.from_url(srv.url + "/api/openapi.json")


def test_document_is_public_and_describes_the_api(srv):
    r = httpx.get(srv.url + "/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [("/api/health", "get"), ("/api/auth", "post"), ("/api/jobs", "get"),
                         ("/api/jobs", "post"), ("/api/jobs/{job_id}", "get"),
                         ("/api/jobs/{job_id}", "delete"), ("/api/jobs/{job_id}/download", "get"),
                         ("/api/jobs/{job_id}/cancel", "post"),
                         ("/api/jobs/{job_id}/videos/{video_id}/retry", "post"), ("/metrics", "get"),
                         ("/api/jobs/{job_id}/videos/{video_id}/outputs/{number}", "get"),
                         ("/api/jobs/{job_id}/videos/{video_id}/outputs/{number}/preview", "get"),
                         ("/api/uploads/{upload_id}", "head")]:
        assert method in paths[path], (method, path)
    # Every path parameter an operation declares is in its path, and the other way round.
    for path, operations in paths.items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in operations.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, (method, path, declared)
    upload = paths["/api/jobs"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "202" in upload["responses"] and "413" in upload["responses"]
    assert paths["/api/health"]["get"]["security"] == []
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "application/zip" in paths["/api/jobs/{job_id}/download"]["get"]["responses"]["200"]["content"]
    # The browser app is not part of the API.
    assert "/" not in paths and not any(p.startswith("/ui") for p in paths)


def test_generated_requests_never_get_a_server_error(api_schema, tokens):
    token = tokens[0]
    # Hypothesis per operation by hand: Schemathesis' pytest plugin does not run on pytest 9.
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   checks=[not_a_server_error], timeout=30)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _fields_documented(model, body: dict, where: str) -> None:
    """Every field the server sends is in the documented model, and the body validates."""
    model.model_validate(body)
    assert set(body) <= set(model.model_fields), (where, set(body) - set(model.model_fields))


def test_the_documented_shapes_are_the_ones_served(srv, token, tmp_path):
    from tests.clips import make_clip
    from tests.server import wait_job
    from web.openapi import Health, Job

    _fields_documented(Health, httpx.get(srv.url + "/api/health").json(), "health")
    # The token from before the fuzzing: it may have locked /api/auth for a minute.
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as c:
        clip = make_clip(tmp_path, "a.mp4")
        r = c.post("/api/jobs", files=[("videos", ("a.mp4", clip.read_bytes(), "video/mp4"))],
                   data={"variations": "1"})
        job = wait_job(c, r.json()["jobId"])
    _fields_documented(Job, job, "job")


def test_a_body_cannot_carry_a_field_its_documented_model_lacks():
    """The views fill the very classes the document is made from, and those refuse unknown
    fields: a new field must be declared (and so documented) before it can be served."""
    import pydantic

    from web import models, openapi, views

    assert openapi.Job is models.Job and views.models is models
    fields = {"index": 0, "name": "a_v01.mp4", "size": 1, "effects": ["mirrored"],
              "url": "/api/jobs/j/videos/v/outputs/1", "previewUrl": "/x"}
    with pytest.raises(pydantic.ValidationError):
        models.Output(**fields, undocumented=True)
    assert "distinctness" not in models.Output(**fields).dump()
