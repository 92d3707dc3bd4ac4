# Video Refresher: one process (web server + FFmpeg pipeline), data on a volume at /data.
#   docker build -t video-refresher .
#   docker run -p 8080:8080 -v vr-data:/data -e VR_PASSWORD='choose-one' video-refresher
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (their layer is reused while only the code changes). FFmpeg comes from the
# imageio-ffmpeg wheel: a pinned static build with libx264, no apt packages needed.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY pipeline ./pipeline
COPY web ./web
COPY bench ./bench
COPY ui ./ui
# Editable, so the app finds ui/ next to web/; fail the build now if FFmpeg cannot run.
RUN pip install --no-deps -e . \
 && python -c "from pipeline.ffmpeg import find_ffmpeg, ffmpeg_version; print('ffmpeg', ffmpeg_version(find_ffmpeg()))"

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
