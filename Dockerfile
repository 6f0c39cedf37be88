# syntax=docker/dockerfile:1
#
# deskd's container image: one static-ish binary (glibc) on a distroless base,
# running as a non-root user. Build from the repository root:
#
#   docker build -t deskd:dev .
#
# The migrations are compiled into the binary (`sqlx::migrate!` in src/db.rs),
# so the image holds nothing but /deskd. `scripts/check-deploy` lints this file
# with hadolint; no image is built in CI (see deploy/README.md).
#
# Builder and runtime must be the same Debian release (bookworm = Debian 12):
# the binary links against the builder's glibc. Pin both by digest in a real
# pipeline (`rust:1.95-bookworm@sha256:…`).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src

# 1. Dependencies only, in their own layer: it is rebuilt when Cargo.toml or
#    Cargo.lock change, not when src/ does. Cargo needs every target that the
#    workspace's manifests name, so each gets an empty stand-in here (the
#    `clients/rust` member, the integration-test binary, the benches, the
#    build script). Building the `deskd` binary against them compiles every
#    dependency and build-dependency (protox, tonic-prost-build) of the
#    package.
COPY Cargo.toml Cargo.lock ./
COPY clients/rust/Cargo.toml clients/rust/Cargo.toml
RUN mkdir -p src benches tests/api clients/rust/src \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && echo 'fn main() {}' > build.rs \
    && for b in stats invalidation export; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && : > tests/api/main.rs \
    && : > clients/rust/src/lib.rs \
    && cargo build --release --locked --bin deskd

# 2. deskd itself. Only what the binary is built from: the build script and
#    the protos it compiles, the migrations that sqlx::migrate! embeds, and
#    the sources. The stand-ins' outputs are removed and the real files
#    touched, so Cargo cannot take the stubs' artifacts for up to date (COPY
#    keeps the files' modification times, which may be older than them).
COPY build.rs ./
COPY proto ./proto
COPY migrations ./migrations
COPY src ./src
RUN rm -rf target/release/deps/deskd-* target/release/deps/libdeskd-* \
        target/release/build/deskd-* target/release/.fingerprint/deskd-* \
    && touch build.rs src/main.rs src/lib.rs \
    && cargo build --release --locked --bin deskd \
    && install -D -m 0755 target/release/deskd /out/deskd

# ---------------------------------------------------------------------------
# Runtime stage: distroless "cc" (glibc, libgcc_s, CA certificates, tzdata;
# no shell, no package manager). The :nonroot tag runs as uid/gid 65532.
# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

COPY --from=build /out/deskd /deskd

# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# deskd resolves relative paths (e.g. the development JWT secret file and
# the default `fs` export directory, both under ./.deskd) against this
# directory. In Kubernetes the root filesystem is read-only: configure
# DESKD_JWT_SECRET / DESKD_SECRET_KEY and S3 exports instead (deploy/k8s).
WORKDIR /home/nonroot

# Inside a container the listeners must not be bound to loopback (the
# defaults are 127.0.0.1:50051 and 127.0.0.1:9090, unreachable from outside
# the container). The admin port serves /metrics, /livez and /readyz and
# must stay off the public network (expose it to the cluster only).
ENV DESKD_LISTEN_ADDR=0.0.0.0:50051 \
    DESKD_ADMIN_ADDR=0.0.0.0:9090 \
    DESKD_LOG_FORMAT=json

# 50051: gRPC (h2c). 9090: admin HTTP (/metrics, /livez, /readyz).
EXPOSE 50051 9090

# SIGTERM (the default stop signal) makes `deskd serve` drain: /readyz and
# gRPC health turn NOT_SERVING, in-flight RPCs and running jobs get
# server.shutdown_grace (30s by default) to finish.
ENTRYPOINT ["/deskd"]
CMD ["serve"]
