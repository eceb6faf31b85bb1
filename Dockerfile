# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a
# non-root user. Config is mounted read-only at /config; the store lives on the /data
# volume (OQL_DB). Secrets come as environment variables or mounted files.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
COPY connectors ./connectors
COPY mappings ./mappings
COPY examples ./examples
RUN cargo build --release --locked --bin oql-sync

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data --shell /usr/sbin/nologin oql \
    && mkdir -p /data /config && chown oql /data
COPY --from=build /src/target/release/oql-sync /usr/local/bin/oql-sync
USER oql
VOLUME ["/data"]
ENV OQL_DB=sqlite:///data/oql.db
EXPOSE 9464
# The endpoint listens on all interfaces inside the container only; publish it to
# loopback on the host (-p 127.0.0.1:9464:9464).
ENTRYPOINT ["oql-sync", "--config-dir", "/config"]
CMD ["run", "--listen", "0.0.0.0:9464", "--log-format", "json"]
