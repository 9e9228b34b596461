# syntax=docker/dockerfile:1
# Build: docker build -t haystream .
# Run:   docker run --rm -p 8000:8000 haystream                      (real OpenAI; callers send their key)
#        docker run --rm -p 8000:8000 -e HAYSTREAM_DEMO=true haystream  (offline demo model)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in their own layer: source edits do not reinstall them.
COPY constraints.txt pyproject.toml README.md ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > requirements.txt \
    && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt
COPY service ./service
COPY pipelines ./pipelines
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HAYSTACK_TELEMETRY_ENABLED=False \
    HOST=0.0.0.0 \
    PORT=8000
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home app
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=2)"]
CMD ["haystream"]
