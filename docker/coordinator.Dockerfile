# syntax=docker/dockerfile:1
# labelgen coordinator (submit, watch, status, list, cancel, retry-dead, finalize, resume,
# verify, plan, metrics). It links no Burn (CI checks the crate graph): a small image that
# checks models without loading them.
#   docker build -f docker/coordinator.Dockerfile -t labelgen-coordinator:dev .
# Every base is a fixed version tag (no `latest`, no moving tags); pin digests per
# deployment with the kustomize images transformer.

# ---- toolchain ------------------------------------------------------------------------
# Debian 12 builder for a Debian 12 runtime: same glibc.
FROM rust:1.95.0-bookworm AS chef
# cmake + clang: aws-lc-sys (TLS for the S3 client) builds C code. cargo-chef: the
# dependency layer below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# ---- dependency recipe: Cargo.toml/Cargo.lock only, so source edits keep the cache ----
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- build ----------------------------------------------------------------------------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json -p coordinator
COPY . .
RUN cargo build --release --locked -p coordinator \
 && install -D -m 0755 target/release/coordinator /out/coordinator

# ---- run ------------------------------------------------------------------------------
# Debian 12.8 slim (a point release: a fixed tag, unlike distroless's `nonroot`) with the
# CA certificates the S3 and Redis TLS clients need; runs as uid 65532.
FROM debian:12.8-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 labelgen \
 && useradd --system --uid 65532 --gid labelgen --home-dir /tmp --shell /usr/sbin/nologin labelgen
COPY --from=builder /out/coordinator /usr/local/bin/coordinator
USER 65532:65532
# `watch --metrics-addr 0.0.0.0:9465` serves labelgen_queue_shards here.
EXPOSE 9465
#checkov:skip=CKV_DOCKER_2:a batch CLI, not a service; `watch` is probed by Kubernetes (httpGet /healthz, /readyz) and the image has no HTTP client for a HEALTHCHECK
ENTRYPOINT ["/usr/local/bin/coordinator"]
