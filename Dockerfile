# syntax=docker/dockerfile:1
#
# Warren's container image: the release binary on a distroless base, run as a
# non-root user. `docker build -t warren:0.1.0 --build-arg VERSION=0.1.0 .`
# (see README.md, "Container image").
#
# Two stages:
#   build    compiles the dependencies once in a layer of their own (reused until
#            Cargo.toml or Cargo.lock change), then the crate itself.
#   runtime  gcr.io/distroless/cc: glibc, libgcc, CA certificates (for amqps://)
#            and nothing else: no shell, no package manager.
# The build image and the runtime image must share a Debian release (glibc).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG DISTROLESS_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# Optional cargo features, space-separated (for example "otel").
ARG CARGO_FEATURES=""
WORKDIR /src

# Dependencies only: the real manifest and lockfile with a stub crate. This layer
# is the slow one and stays cached while only sources change.
# Cargo.toml declares the benchmark target, so cargo wants its file to exist.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && echo 'fn main() {}' > benches/drain.rs \
    && cargo build --release --locked --bin warren --features "${CARGO_FEATURES}" \
    && rm -rf src

# The crate. COPY keeps the sources' modification times, which may be older than
# the stub's build; touching the crate roots makes cargo rebuild the crate.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin warren --features "${CARGO_FEATURES}" \
    && install -D -m 0755 target/release/warren /out/warren

FROM ${DISTROLESS_IMAGE} AS runtime
ARG DISTROLESS_IMAGE
# Image metadata; set VERSION (and REVISION, the git commit) when building a release.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="warren" \
      org.opencontainers.image.description="RabbitMQ work-queue worker pool: acks after success, retries with backoff, dead-letters poison tasks, drains on SIGTERM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${DISTROLESS_IMAGE}"

COPY --from=build /out/warren /usr/local/bin/warren
# distroless' "nonroot" user, numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# /livez, /readyz and /metrics (server.listen, default 0.0.0.0:9090).
EXPOSE 9090
# No init: as PID 1, `warren work` reaps the orphans exec programs leave behind
# (docs/handlers.md, "In a container").
ENTRYPOINT ["warren"]
CMD ["work"]
