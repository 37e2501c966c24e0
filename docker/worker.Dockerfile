# syntax=docker/dockerfile:1
# labelgen worker with NVIDIA GPU support (cargo feature `cuda`, burn-cuda).
#   docker build -f docker/worker.Dockerfile -t labelgen-worker:dev .
# Building needs no CUDA toolkit (burn-cuda loads the driver and NVRTC at run time);
# running needs the NVIDIA driver on the node (NVIDIA container toolkit / GPU operator).

# ---- build ----------------------------------------------------------------------------
# Debian 12 (glibc 2.36) builds a binary that runs on the Ubuntu 24.04 base below
# (glibc 2.39); keep the build's glibc no newer than the runtime's.
FROM rust:1.95.0-bookworm AS builder
# cmake + clang: aws-lc-sys (TLS for the S3 client) builds C code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p worker --features cuda \
 && install -D -m 0755 target/release/worker /out/worker

# ---- run ------------------------------------------------------------------------------
# The CUDA runtime image carries the CUDA user-space libraries burn-cuda loads (NVRTC
# among them); the driver (libcuda) is injected by the NVIDIA container runtime.
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
# GPUs visible and the compute/utility driver capabilities for the container runtime.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache
RUN groupadd --system --gid 10001 labelgen \
 && useradd --system --uid 10001 --gid labelgen --home-dir /tmp --shell /usr/sbin/nologin labelgen
COPY --from=builder /out/worker /usr/local/bin/worker
USER 10001:10001
# /metrics, /healthz, /readyz
EXPOSE 9464
# Kubernetes probes /healthz and /readyz (k8s/base/worker-deployment.yaml); the image has
# no HTTP client to run a Docker HEALTHCHECK with.
#checkov:skip=CKV_DOCKER_2:health is probed by Kubernetes (httpGet /healthz, /readyz); the image carries no HTTP client for a HEALTHCHECK
ENTRYPOINT ["/usr/local/bin/worker"]
