# syntax=docker/dockerfile:1
# The Ductape server in a small image: built in a Rust image, run from distroless (glibc and
# nothing else: no shell, no package manager) as a non-root user, data in a volume.
#   docker build --build-arg DUCTAPE_COMMIT="$(git rev-parse --short=12 HEAD)" -t ductape .
#   docker run -p 8200:8200 -v ductape-data:/var/lib/ductape ductape
# The first start prints a one-time setup token (docker logs); `ductape init` uses it.
# Checked by hadolint in ./scripts/test (no Docker daemon on the test machines).

# The web console in two steps: the core compiled to WebAssembly (Rust), then the pages
# (Node, from console/package-lock.json); the server build embeds console/dist.
FROM rust:1.85-bookworm AS wasm
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ./scripts/build-console wasm

FROM node:22-bookworm-slim AS console
WORKDIR /src
COPY scripts/build-console scripts/build-console
COPY console console
COPY --from=wasm /src/console/src/wasm console/src/wasm
RUN ./scripts/build-console pages

FROM rust:1.85-bookworm AS build
ARG DUCTAPE_COMMIT=unknown
WORKDIR /src
COPY . .
COPY --from=console /src/console/dist console/dist
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    DUCTAPE_COMMIT="${DUCTAPE_COMMIT}" cargo build --release --locked -p ductape-cli \
    && cp target/release/ductape /usr/local/bin/ductape \
    && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/ductape /usr/local/bin/ductape
COPY --from=build --chown=65532:65532 /data /var/lib/ductape
ENV DUCTAPE_ADDR=0.0.0.0:8200 \
    DUCTAPE_DATA_DIR=/var/lib/ductape \
    DUCTAPE_LOG_FORMAT=json
USER 65532:65532
VOLUME ["/var/lib/ductape"]
EXPOSE 8200
# Readiness, not just liveness: the database answers. With --tls-cert, point it at https://
# and the certificate's name (or DUCTAPE_CA_CERT) instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/ductape", "doctor", "--server-only", "--url", "http://127.0.0.1:8200"]
ENTRYPOINT ["/usr/local/bin/ductape"]
CMD ["server"]
