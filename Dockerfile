# syntax=docker/dockerfile:1
# Build: docker build -t haystream .
# Run:   docker run --rm -p 8000:8000 --stop-timeout 25 haystream
#        (settings as -e HAYSTREAM_...=...; -e HAYSTREAM_DEMO=true for the offline demo model;
#        --stop-timeout must exceed HAYSTREAM_SHUTDOWN_GRACE, 20 s by default: see docs/deployment.md)
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in their own layer: editing the source (or the README) does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > requirements.txt \
    && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY pipelines ./pipelines
COPY service ./service
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "service.ops.probe", "/healthz"]
CMD ["haystream"]
