# syntax=docker/dockerfile:1
# The Weir broker image (docs/deploy.md, "Containers"):
#   docker build --build-arg WEIR_GIT_COMMIT=$(git rev-parse HEAD) -t weir .
#   docker run -p 9292:9292 -p 9293:9293 -v weir-data:/var/lib/weir weir
# Configured through environment variables (packaging/docker/entrypoint.sh); a 3-broker
# cluster: docker-compose.yml.

# Build: the release binaries, on the Rust toolchain the repository is tested with.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      protobuf-compiler libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No .git in the build context: the commit comes in as an argument (`--version`).
ARG WEIR_GIT_COMMIT=unknown
ENV WEIR_GIT_COMMIT=${WEIR_GIT_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir-broker -p weir-cli \
 && install -m 0755 target/release/weir-broker target/release/weir /usr/local/bin/

# Run: a slim Debian with the two binaries, as the unprivileged user weir.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 weir \
 && useradd --system --uid 10001 --gid weir --home-dir /var/lib/weir --no-create-home \
      --shell /usr/sbin/nologin weir \
 && install -d -o weir -g weir -m 0750 /var/lib/weir
COPY --from=build /usr/local/bin/weir-broker /usr/local/bin/weir /usr/local/bin/
COPY packaging/docker/entrypoint.sh /usr/local/bin/weir-entrypoint
USER weir:weir
WORKDIR /var/lib/weir
VOLUME ["/var/lib/weir"]
# gRPC (clients and the other members), Prometheus metrics.
EXPOSE 9292 9293
ENV WEIR_DATA_DIR=/var/lib/weir \
    WEIR_LISTEN=0.0.0.0:9292 \
    WEIR_METRICS_LISTEN=0.0.0.0:9293
# The gRPC health service (grpc.health.v1): SERVING while the broker takes requests,
# NOT_SERVING from the moment it begins to stop.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["weir", "--broker", "127.0.0.1:9292", "admin", "health"]
# SIGTERM: a graceful stop (controlled shutdown in a cluster, at most 15 s, then a flush);
# give it the time with `docker stop -t 90` (docker-compose.yml sets stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/weir-entrypoint"]
