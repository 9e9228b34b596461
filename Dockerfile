# syntax=docker/dockerfile:1
# Build: docker build -t haystream .
#        podman build --format docker -t haystream .
#        (podman builds OCI images by default, and the OCI format has no HEALTHCHECK: without
#        --format docker podman drops the one below, with only a warning)
# Run:   docker run --rm -p 8000:8000 --stop-timeout 25 haystream
#        (settings as -e HAYSTREAM_...=...; -e HAYSTREAM_DEMO=true for the offline demo model;
#        --stop-timeout must exceed HAYSTREAM_SHUTDOWN_GRACE, 20 s by default: see docs/deployment.md)
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The virtualenv gets no pip or setuptools of its own (--without-pip): the build stage's pip installs
# into it from outside (--python), and the build backend (pinned in pyproject.toml) lives only in
# pip's isolated build environment. So the copied /opt/venv holds what the service runs, nothing else.
# Dependencies first, in their own layer: editing the source (or the README) does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -m venv --without-pip /opt/venv \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > requirements.txt \
    && pip --python /opt/venv/bin/python install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY pipelines ./pipelines
COPY service ./service
RUN pip --python /opt/venv/bin/python install --no-deps .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    HOST=0.0.0.0 \
    PORT=8000
# The base image's own pip, setuptools and wheel are never used at run time (the virtualenv's python
# does not see /usr/local's site-packages), but scanners flag them (setuptools < 70: CVE-2024-6345):
# removed. Their bytes stay in the base image's layer; only a different base would drop those.
# HOME exists and is the user's own, for any library that writes a cache or config there.
RUN /usr/local/bin/python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "service.ops.probe", "/healthz"]
CMD ["haystream"]
