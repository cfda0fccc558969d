# syntax=docker/dockerfile:1
# Build and runtime stages use the same Python minor version, so the virtualenv copies over.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
# Every runtime dependency comes from the lock, each file checked against its hashes
# (README, Development: how to regenerate it). The operator CLI's extra is not installed.
COPY requirements.lock ./
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
      -r requirements.lock
COPY pyproject.toml README.md ./
COPY function function
RUN /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
# Crossplane passes TLS_SERVER_CERTS_DIR; the function listens on 9443 (gRPC) and serves
# /metrics, /healthz and /readyz on 8080 (plain HTTP).
EXPOSE 9443 8080
USER 65532:65532
ENTRYPOINT ["/venv/bin/function"]
