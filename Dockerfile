# syntax=docker/dockerfile:1.7
#
# One image for both roles of the scale-out mode: the API node (`tdmi serve`) and the inference
# worker (`tdmi worker`); docker-compose.yml and deploy/k8s pick the role with the command.
#
#   docker build -t tdmi-pose:0.1.0 .                               # NVIDIA GPU (the default)
#   docker build --build-arg VARIANT=cpu -t tdmi-pose:0.1.0-cpu .   # CPU-only hosts
#
# The variant is a build argument rather than two final stages so that everything after the
# runtime (user, settings, health check, entry point) is written once for both.
# Layers go from what changes least to what changes most: the system Python, PyTorch (gigabytes
# with CUDA), the other dependencies (read from pyproject.toml alone, so editing code does not
# reinstall them), then our packages as one wheel with the demo checkpoint inside.

ARG VARIANT=gpu
ARG TORCH_VERSION=2.13.0

# ---- requirements: the dependency lists of pyproject.toml, without our code -----------------------
FROM python:3.12-slim-bookworm AS requirements
WORKDIR /build
COPY pyproject.toml .
COPY clients/pyproject.toml clients/
# torch is left out: each runtime installs it from PyTorch's own index (CPU or CUDA build); so is
# tdmi-client, our SDK and wire contract, built from clients/ below: its own dependencies come in.
# gpu: onnxruntime-gpu (the `gpu` extra) in place of onnxruntime; both install the same
# `onnxruntime` module, and whichever is installed last wins, so they must never meet.
RUN python - <<'EOF'
import re
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
sdk = tomllib.load(open("clients/pyproject.toml", "rb"))["project"]


def name(requirement):
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


ours = {"torch", "tdmi-client"}
server = [r for r in project["dependencies"] if name(r) not in ours]
listed = {name(r) for r in server}
client = sdk["dependencies"] + sdk["optional-dependencies"]["media"]
cpu = server + [r for r in client if name(r) not in listed]
gpu = [r for r in cpu if name(r) != "onnxruntime"] + project["optional-dependencies"]["gpu"]
open("cpu.txt", "w").write("\n".join(cpu) + "\n")
open("gpu.txt", "w").write("\n".join(gpu) + "\n")
EOF

# ---- wheels: the server (tdmi.model with the demo checkpoint, tdmi.service) and the SDK ------------
FROM python:3.12-slim-bookworm AS wheel
WORKDIR /build
# .dockerignore lets in only the two pyproject.toml files, README.md, tdmi/ and the packages
COPY . .
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels ./clients .

# ---- cpu runtime: Python slim, the CPU build of PyTorch -------------------------------------------
FROM python:3.12-slim-bookworm AS cpu-runtime
ARG TORCH_VERSION
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
RUN --mount=type=bind,from=requirements,source=/build,target=/requirements \
    pip install --no-cache-dir -r /requirements/cpu.txt

# ---- gpu runtime: CUDA 12.8 with cuDNN 9 (ONNX Runtime's CUDA provider loads them from the system),
# the CUDA build of PyTorch and onnxruntime-gpu ------------------------------------------------------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS gpu-runtime
ARG TORCH_VERSION
ARG DEBIAN_FRONTEND=noninteractive
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cu128
RUN --mount=type=bind,from=requirements,source=/build,target=/requirements \
    pip install --no-cache-dir -r /requirements/gpu.txt

# ---- the image: our code on the chosen runtime, run as an unprivileged user -----------------------
FROM ${VARIANT}-runtime AS image
# numeric ids so that Kubernetes' runAsNonRoot can verify them; /data is the jobs volume
RUN groupadd --gid 10001 tdmi \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin tdmi \
    && mkdir /data \
    && chown tdmi:tdmi /data
# --no-deps: the dependencies are the layers above; pip must not swap onnxruntime-gpu back
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps /wheels/*.whl
# published weights baked in at build time by the command users run (`--build-arg
# WEIGHTS="hrnet-w48-384x288-posetrack18 yolox-m-humanart"`, see `tdmi weights list`); an
# air-gapped build names its mirror in WEIGHTS_MIRROR. Default: none, the image downloads nothing.
ARG WEIGHTS=""
ARG WEIGHTS_MIRROR=""
ENV TDMI_WEIGHTS_DIR=/opt/tdmi/weights
RUN if [ -n "$WEIGHTS" ]; then TDMI_WEIGHTS_MIRROR="$WEIGHTS_MIRROR" tdmi weights pull --quiet $WEIGHTS; fi
ENV PYTHONUNBUFFERED=1 TDMI_HOST=0.0.0.0 TDMI_PORT=8000 TDMI_DATA_DIR=/data
WORKDIR /home/tdmi
USER 10001:10001
EXPOSE 8000
# both roles answer /healthz on TDMI_PORT (a worker serves /healthz, /readyz and /metrics there);
# models load and warm up before /readyz turns ready, hence the start period
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TDMI_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["tdmi"]
CMD ["serve"]
