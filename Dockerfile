# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a
# non-root user. Config is mounted read-only at /config; the store lives on the /data
# volume (OQL_DB), with drop folders and file-sink outputs under /data too.
# Secrets come as environment variables or mounted files. Stop with a grace period
# longer than the daemon's 30 s drain: `docker stop -t 45 oql-sync`.
FROM rust:1-bookworm AS build
WORKDIR /src
# SQLite build flags (LIBSQLITE3_FLAGS) live in .cargo/config.toml: without them the
# image's SQLite would not be the one the benchmarks measured.
COPY .cargo ./.cargo
COPY Cargo.toml Cargo.lock ./
# Dependency layer: built from the manifests alone (placeholder targets), so a change
# to the sources rebuilds only the crate itself.
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/sync_crm.rs && echo 'fn main() {}' > benches/scale.rs \
    && cargo build --release --locked --bin oql-sync \
    && rm -rf src benches
COPY src ./src
COPY build.rs ./
COPY migrations ./migrations
COPY benches ./benches
COPY connectors ./connectors
COPY mappings ./mappings
COPY examples ./examples
# The placeholders' artifacts are older than the sources only by mtime: touch to be sure.
ARG OQL_COMMIT=unknown
RUN touch src/main.rs src/lib.rs && OQL_COMMIT=$OQL_COMMIT cargo build --release --locked --bin oql-sync

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data --shell /usr/sbin/nologin oql \
    && mkdir -p /data /config && chown oql /data
COPY --from=build /src/target/release/oql-sync /usr/local/bin/oql-sync
USER oql
VOLUME ["/data"]
ENV OQL_DB=sqlite:///data/oql.db OQL_CONFIG_DIR=/config
EXPOSE 9464
# `oql-sync health` asks the daemon's /healthz on 127.0.0.1:9464 (run's default
# address; inside the container it listens on every interface): no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["oql-sync", "health"]
# The endpoint listens on all interfaces inside the container only; publish it to
# loopback on the host (-p 127.0.0.1:9464:9464).
ENTRYPOINT ["oql-sync"]
CMD ["run", "--listen", "0.0.0.0:9464", "--log-format", "json"]
