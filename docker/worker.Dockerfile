# syntax=docker/dockerfile:1
# labelgen worker with NVIDIA GPU support (cargo feature `cuda`, burn-cuda).
#   docker build -f docker/worker.Dockerfile -t labelgen-worker:dev .
# Building needs no CUDA toolkit (burn-cuda loads the driver and NVRTC at run time);
# running needs the NVIDIA driver on the node (NVIDIA container toolkit / GPU operator).
# Every base is a fixed version tag (no `latest`, no moving tags); pin digests per
# deployment with the kustomize images transformer.

# ---- toolchain ------------------------------------------------------------------------
# Debian 12 (glibc 2.36) builds a binary that runs on the Ubuntu 24.04 base below
# (glibc 2.39); keep the build's glibc no newer than the runtime's.
FROM rust:1.95.0-bookworm AS chef
# cmake + clang: aws-lc-sys (TLS for the S3 client) builds C code. cargo-chef: the
# dependency layer below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src
# No nvcc here, so cudarc would bind the newest CUDA it knows (13.x); pin the bindings to
# the NVRTC the runtime image below ships (12.6), so no symbol is missing at run time.
ENV CUDARC_CUDA_VERSION=12060

# ---- dependency recipe: Cargo.toml/Cargo.lock only, so source edits keep the cache ----
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- build ----------------------------------------------------------------------------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Every dependency (Burn, burn-cuda, the S3 client…), in its own layer: rebuilt only when
# a manifest or Cargo.lock changes, not on a source change.
RUN cargo chef cook --release --recipe-path recipe.json -p worker --features cuda
COPY . .
RUN cargo build --release --locked -p worker --features cuda \
 && install -D -m 0755 target/release/worker /out/worker

# ---- run ------------------------------------------------------------------------------
# burn-cuda needs the driver (libcuda, injected by the NVIDIA container runtime) and
# NVRTC (it compiles its kernels at run time), nothing else of CUDA: the `base` image
# (cudart + compat) plus the NVRTC package from the CUDA apt repository it configures,
# not the multi-GB `runtime` image (cuBLAS, cuFFT, cuSPARSE… unused).
FROM nvidia/cuda:12.6.3-base-ubuntu24.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends cuda-nvrtc-12-6 \
 && rm -rf /var/lib/apt/lists/*
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
