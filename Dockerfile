# scp-node: DICOM Storage SCP + DICOMweb node with the LSTV screen (docs/deployment.md).
#
#   docker build -t scp-node:0.1.0 .
#   docker run --gpus all -p 11112:11112 -p 127.0.0.1:8043:8043 -v scp-node-data:/data scp-node:0.1.0
#
# (DICOMweb, probes and metrics stay on the host's loopback; docs/deployment.md.) The image's
# defaults are in /etc/scp-node/container.toml; a file given with SCP_NODE_CONFIG overrides them.
#
# CPU-only image for hosts without a GPU (PyTorch's CPU build of the same torch==2.13.0, about
# 4 GB smaller; docs/deployment.md has the measured sizes):
#   docker build --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
#     -t scp-node:0.1.0-cpu .
#
# No conda anywhere: a slim Debian Python 3.11 image plus wheels from PyPI. Every Python package
# comes from pyproject.toml (the project is installed from its own wheel); torch==2.13.0 from PyPI
# is the CUDA build on Linux x86_64 and brings the CUDA user-space libraries as nvidia-* wheels, so
# the host needs only the NVIDIA driver and the NVIDIA Container Toolkit (`--gpus all`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: turn the source tree into one wheel (build tools stay in this stage) ---------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY scp_node ./scp_node

# Builds with the backend pyproject.toml names ([build-system]) in an isolated environment; the
# wheel carries the package data: codec self-test samples and the reference weights.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m zipfile -l /dist/scp_node-*.whl > /tmp/wheel-contents.txt \
    && grep -q "scp_node/data/reference_localizer.pt" /tmp/wheel-contents.txt \
    && grep -q "scp_node/data/codec_samples/" /tmp/wheel-contents.txt

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="scp-node" \
      org.opencontainers.image.description="DICOM Storage SCP + DICOMweb node: LSTV screen, DICOM SR back to the PACS (research use only)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SCP_NODE_BASE_CONFIG=/etc/scp-node/container.toml

# The node never runs as root; /data (spool, SQLite index, results) belongs to it.
RUN groupadd --system --gid 10001 scpnode \
    && useradd --system --uid 10001 --gid scpnode --create-home --home-dir /home/scpnode \
       --shell /usr/sbin/nologin scpnode \
    && mkdir -p /data \
    && chown scpnode:scpnode /data

# Empty: torch from PyPI, the CUDA build. PyTorch's CPU index instead: its torch==2.13.0+cpu
# satisfies the same pin and ranks above PyPI's 2.13.0, so pip takes the CPU build (and no
# nvidia-* wheels). A build argument is in the environment of RUN only, not of the image.
ARG PIP_EXTRA_INDEX_URL=""

# The wheel is bind-mounted from the builder, so no layer keeps a copy of it. pip resolves the
# dependencies from the wheel's metadata, i.e. from pyproject.toml; nothing else is named here.
# The decoder self-test then proves at build time that the codecs import and decode.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    pip install --no-cache-dir /dist/scp_node-*.whl \
    && scp-node decoders

# Documentation only: the generated default configuration and the examples to copy from.
COPY config/ /usr/share/doc/scp-node/config/
# The image's defaults (data under /data, listeners on all interfaces), read before SCP_NODE_CONFIG.
COPY config/container.toml /etc/scp-node/container.toml

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# 11112: DICOM upper layer (C-ECHO, C-STORE, Storage Commitment); 8043: DICOMweb, probes, metrics.
EXPOSE 11112 8043

# The node checks itself with its own C-ECHO (same config and environment as `serve`).
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 \
    CMD ["scp-node", "echo"]

CMD ["scp-node", "serve"]
