# syntax=docker/dockerfile:1
# labelgen coordinator (submit, watch, status, list, cancel, retry-dead, finalize). It links no
# Burn (CI checks the crate graph): a small image that checks models without loading them.
#   docker build -f docker/coordinator.Dockerfile -t labelgen-coordinator:dev .

# ---- build ----------------------------------------------------------------------------
# Debian 12 builder for a Debian 12 (distroless) runtime: same glibc.
FROM rust:1.95.0-bookworm AS builder
# cmake + clang: aws-lc-sys (TLS for the S3 client) builds C code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p coordinator \
 && install -D -m 0755 target/release/coordinator /out/coordinator

# ---- run ------------------------------------------------------------------------------
# glibc, libgcc, CA certificates and nothing else; runs as uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/coordinator /usr/local/bin/coordinator
USER 65532:65532
# `watch --metrics-addr 0.0.0.0:9465` serves labelgen_queue_shards here.
EXPOSE 9465
#checkov:skip=CKV_DOCKER_2:a batch CLI, not a service; `watch` is probed by Kubernetes (httpGet /healthz, /readyz) and distroless has no shell or HTTP client for a HEALTHCHECK
ENTRYPOINT ["/usr/local/bin/coordinator"]
