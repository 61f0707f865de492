# onair: one web radio per container.
#
#   docker build -t onair .            # or: podman build -t onair .
#   docker run --rm -p 8000:8000 onair # plays the demo library: http://localhost:8000/radio.mp3
#
# Your own radio: mount its config over the demo one (read-only root file system, no capabilities):
#   docker run --read-only --cap-drop=ALL -p 8000:8000 \
#     -v "$PWD/radio.toml:/etc/onair/radio.toml:ro" -v onair-cache:/var/cache/onair onair
#
# Stage `builder` compiles the release binary. A machine that cannot download crates during a
# build hands in a binary compiled outside instead, as a directory laid out like this stage
# (DIR/usr/local/bin/onair): `podman build --build-context builder=DIR ...` (scripts/container-smoke.sh).

ARG BASE_IMAGE=debian:bookworm-slim

FROM rust:1-bookworm AS builder
WORKDIR /src
# Dependency layer: compiled from Cargo.toml and Cargo.lock alone, with empty stand-ins for the
# crate's own targets, so that a change to the sources does not rebuild every dependency.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/it \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tests/it/main.rs \
    && echo 'fn main() {}' > benches/pipeline.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# COPY keeps the files' times, which can be older than the stand-ins: touch so cargo rebuilds.
# --strip-debug keeps the symbols (function names in panics) and drops ~35 MB of line tables.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/onair /usr/local/bin/onair \
    && strip --strip-debug /usr/local/bin/onair

FROM ${BASE_IMAGE}
# CA roots, for an S3 library on an https:// endpoint (rustls reads the system bundle). Installed
# only when the base lacks them, so a base that has them builds with no network
# (scripts/container-smoke.sh). Not pinned: the roots must follow Debian's updates.
# hadolint ignore=DL3008
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# A fixed non-root UID/GID (10001), as the Kubernetes manifests expect (runAsUser: 10001).
# /var/cache/onair: the cache mount point, writable by that user when nothing is mounted there.
RUN groupadd --system --gid 10001 onair \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin onair \
    && install -d -o 10001 -g 10001 -m 0750 /var/cache/onair

COPY --from=builder /usr/local/bin/onair /usr/local/bin/onair
# The demo radio, so that the image plays out of the box. Its config is the repository's
# config/radio.toml, whose library path (config/media) is relative to the working directory.
COPY config/radio.toml /etc/onair/radio.toml
COPY config/radio.example.toml /usr/share/onair/radio.example.toml
COPY config/media /usr/share/onair/config/media
# The binary contains Fraunhofer FDK AAC (the AAC mounts): its licence goes with it.
COPY LICENSES/FDK-AAC.txt /usr/share/doc/onair/FDK-AAC.txt
WORKDIR /usr/share/onair

# Last, so that a new revision does not invalidate the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="onair" \
      org.opencontainers.image.description="One-process web radio: AutoDJ, MP3 and AAC encoders and Icecast-compatible streaming server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="(MIT OR Apache-2.0) AND LicenseRef-FDK-AAC"

USER 10001:10001
EXPOSE 8000
# onair stops on SIGTERM: /readyz turns 503, listeners are closed, exit 0 within ~2 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["onair"]
CMD ["--config", "/etc/onair/radio.toml"]
