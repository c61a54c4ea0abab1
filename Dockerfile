# pixelserve serving image: REST :8000, gRPC :8001, metrics on /metrics, the default model repository at /models.
#
#   CPU: docker build -t pixelserve .
#   GPU: docker build -t pixelserve:gpu --build-arg EXTRAS=serve,s3,gpu,otlp,otlp-grpc --build-arg DEVICE=cuda .
#
# No TensorFlow and no training code: the dependencies are pyproject.toml's extras named by EXTRAS, the same
# extras a virtualenv install takes, pinned by the lock file of those extras (deploy/docker/lock.sh). `gpu` brings onnxruntime-gpu with the CUDA and cuDNN wheels it loads, so the
# GPU image needs no CUDA base image, only the NVIDIA driver of the host (the NVIDIA container runtime mounts
# it). BASE_IMAGE may be any image with python3 >= 3.11 and the venv module (or apt-get to install them), e.g. a
# locally built Debian base where no registry is reachable. Works with BuildKit and with the classic builder.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
# CUDA base images carry no Python: install the distribution's python3 (>= 3.11) where it is missing.
RUN if ! python3 -c "import sys, tomllib, venv, ensurepip" 2>/dev/null; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*; \
    fi

FROM base AS build
# The image's extras, and so its lock file: deploy/docker/locks/<EXTRAS with commas as dashes>.txt
ARG EXTRAS=serve,s3,otlp,otlp-grpc
# Optional package index for pip (a mirror); unset means PyPI.
ARG PIP_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/docker deploy/docker
# Dependencies first (a layer that survives code changes), then the project itself without dependencies. With a
# lock file for EXTRAS (deploy/docker/lock.sh) every package is pinned by hash, so two builds of one commit get
# the same bytes; other EXTRAS install pyproject's ranges, and say so.
RUN python3 -m venv /opt/pixelserve \
 && lock="deploy/docker/locks/$(echo "${EXTRAS}" | tr , -).txt" \
 && if [ -f "$lock" ]; then \
      /opt/pixelserve/bin/pip install --require-hashes --no-deps -r "$lock"; \
    else \
      echo "no $lock: EXTRAS=${EXTRAS} installs unpinned ranges (deploy/docker/lock.sh locks them)" >&2; \
      python3 deploy/docker/requirements.py pyproject.toml "${EXTRAS}" > requirements.txt \
      && /opt/pixelserve/bin/pip install -r requirements.txt; \
    fi
COPY setup.py .
COPY pixelserve pixelserve
COPY service service
# pip and setuptools are not needed to serve (about 20 MB), nor the C/C++/Cython sources some wheels ship beside
# their compiled extensions (pysimdjson's alone are 7 MB); bytecode is compiled once here, since the container
# runs with PYTHONDONTWRITEBYTECODE (and a read-only root filesystem in Kubernetes).
RUN /opt/pixelserve/bin/pip install --no-deps . \
 && /opt/pixelserve/bin/pip check \
 && /opt/pixelserve/bin/python -m pip uninstall -q -y pip setuptools \
 && find /opt/pixelserve -name __pycache__ -prune -exec rm -rf {} + \
 && find /opt/pixelserve/lib \( -name '*.cpp' -o -name '*.c' -o -name '*.h' -o -name '*.hpp' -o -name '*.pyx' \
      -o -name '*.pxd' \) -delete \
 && /opt/pixelserve/bin/python -m compileall -q /opt/pixelserve/lib

FROM base
ARG DEVICE=cpu
ENV PATH=/opt/pixelserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIXELSERVE_MODEL_REPOSITORY=/models \
    PIXELSERVE_HTTP_HOST=0.0.0.0 \
    PIXELSERVE_GRPC_HOST=0.0.0.0 \
    PIXELSERVE_DEVICE=${DEVICE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pixelserve
COPY --from=build /opt/pixelserve /opt/pixelserve
COPY models/ /models/
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8000 8001
# Ready = models loaded and not draining (the same endpoint Kubernetes and load balancers use); `pixelserve probe`
# follows the server onto HTTPS and mutual TLS (service/tools/probe.py).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["pixelserve", "probe"]
ENTRYPOINT ["pixelserve"]
CMD ["serve"]
