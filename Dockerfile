# syntax=docker/dockerfile:1
# Video Refresher: one process (web server + FFmpeg pipeline), data on a volume at /data.
#   docker build -t video-refresher .
#   docker run -p 8080:8080 -v vr-data:/data -e VR_PASSWORD='choose-one' video-refresher
# (BuildKit, Docker's default builder since 23.0: the image stage mounts the dependency wheels.)

# Stage 1: wheels of every dependency. pdqhash (the distinctness measure) is published as a source
# package only and needs a C++ compiler to build; the compiler stays in this stage, the image
# gets the wheels. Rebuilt only when pyproject.toml changes.
FROM python:3.11-slim AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip wheel --wheel-dir /deps -r /tmp/requirements.txt

# Stage 2: build the wheel (pipeline/, web/ and the browser app as web/ui; see pyproject.toml).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY web ./web
COPY ui ./ui
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 3: the image. No source tree in it: the installed wheel is the only copy of the code.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (their layer is reused while only the code changes), from the wheels of
# stage 1 only (no compiler here). FFmpeg comes from the imageio-ffmpeg wheel: a pinned static
# build with libx264, no apt packages needed.
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=bind,from=deps,source=/deps,target=/tmp/deps \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt --no-index --find-links /tmp/deps \
 && python -c "import pdqhash, numpy; pdqhash.compute(numpy.zeros((64, 64, 3), numpy.uint8))" \
 && rm /tmp/requirements.txt /tmp/pyproject.toml

# A normal (non-editable) install of the wheel; fail the build now if FFmpeg cannot run or the
# browser app is missing.
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && python -c "from pipeline.media.ffmpeg import find_ffmpeg, ffmpeg_version; print('ffmpeg', ffmpeg_version(find_ffmpeg()))" \
 && python -c "import web.app; print('ui', web.app.UI_DIR)"

RUN useradd --create-home --uid 10001 --user-group app \
 && mkdir -p /data \
 && chown app:app /data

ENV VR_DATA_DIR=/data \
    VR_HOST=0.0.0.0 \
    VR_PORT=8080

USER app
VOLUME ["/data"]
EXPOSE 8080

# SIGTERM: Hypercorn stops accepting, FFmpeg gets "q" then SIGTERM/SIGKILL, running videos are
# saved as "interrupted" and resume on the next start. Allow ~30 s before a hard kill.
STOPSIGNAL SIGTERM

# No curl in slim images: ask /api/health with Python (503 or no answer fails the check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('VR_PORT', '8080'), timeout=4)"]

CMD ["video-refresher", "serve"]
