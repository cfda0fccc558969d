# syntax=docker/dockerfile:1
# Build and runtime stages use the same Python minor version, so the virtualenv copies over.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY function function
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
# Crossplane passes TLS_SERVER_CERTS_DIR; the function listens on 9443.
EXPOSE 9443
USER 65532:65532
ENTRYPOINT ["/venv/bin/function"]
