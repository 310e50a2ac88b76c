# Fjord's image: the fjord binary on Debian bookworm-slim, run as a non-root user and configured
# as the apache/kafka image is (KAFKA_* variables, CLUSTER_ID, a properties file as the
# argument), its data in the volume at /var/lib/kafka/data.
#
#   docker build -t fjord .
#       builds from source (cold: ~16 minutes on 2 cores, most of it RocksDB's C++)
#   docker build --build-arg FJORD_PREBUILT=target/docker/fjord -t fjord .
#       packages a binary already built on a Debian bookworm host (what the tests do, with
#       `objcopy --strip-debug target/release/fjord target/docker/fjord`)

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
ARG FJORD_PREBUILT=
WORKDIR /src
COPY . .
RUN set -eu; \
    if [ -n "$FJORD_PREBUILT" ]; then \
        install -D -m 0755 "$FJORD_PREBUILT" /out/fjord; \
    else \
        apt-get update; \
        apt-get install -y --no-install-recommends clang libclang-dev g++ make binutils; \
        cargo build --release --locked -p fjord-broker --bin fjord; \
        install -D -m 0755 target/release/fjord /out/fjord; \
    fi; \
    # ~110 MB with the release profile's line tables, ~30 MB without.
    if command -v objcopy >/dev/null; then objcopy --strip-debug /out/fjord; fi

FROM ${RUNTIME_IMAGE}
# appuser (uid 1000) and /var/lib/kafka/data as in the apache/kafka image, so volumes and
# mounts made for it keep their ownership.
RUN set -eu; \
    useradd --uid 1000 --create-home --home-dir /home/appuser --shell /bin/sh appuser; \
    mkdir -p /var/lib/kafka/data /mnt/shared/config; \
    chown -R appuser:root /var/lib/kafka /mnt/shared/config; \
    chmod -R ug+w /var/lib/kafka
COPY --from=build /out/fjord /usr/local/bin/fjord
USER appuser
WORKDIR /home/appuser
# The image's default data directory; KAFKA_LOG_DIRS in a compose file, or log.dirs in a
# properties file, wins.
ENV KAFKA_LOG_DIRS=/var/lib/kafka/data
# Log lines on stdout, as Kafka's images write them.
ENV KAFKA_LOG_TARGET=stdout
# The apache/kafka image's defaults for what a compose file leaves unset: internal topics with
# one replica and no wait for a group's first members.
ENV KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1 \
    KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1 \
    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1 \
    KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0
VOLUME ["/var/lib/kafka/data"]
# Clients, the controller quorum, and the HTTP listener (/metrics, /readyz, the status page).
EXPOSE 9092 9093 9644
# Ready once the node serves clients (or, controller-only, once the quorum has a leader).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 CMD ["fjord", "healthcheck"]
# SIGTERM (docker stop) is a controlled shutdown: leadership handed over, files closed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fjord"]
