#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs the
# formatting check, clippy, every test, the disaster-recovery drills, the deploy checks and the
# container smoke test. CI runs exactly this (through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The Rust toolchain is the one thing not installed here: say so clearly when it is missing or
# older than the crate's rust-version.
need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$have" ] || ! command -v cargo >/dev/null; then
    echo "error: no Rust toolchain: install rustup (https://rustup.rs), then 'rustup toolchain install stable --component rustfmt,clippy'" >&2
    exit 1
fi
if [ "$(printf '%s\n%s\n' "$need" "${have%%-*}" | sort -V | head -n1)" != "$need" ]; then
    echo "error: rustc $have is older than the crate's rust-version $need: run 'rustup update stable'" >&2
    exit 1
fi
for component in rustfmt clippy; do
    cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || {
        echo "error: the toolchain has no $component: run 'rustup component add $component'" >&2
        exit 1
    }
done

# A C toolchain (LAME and ring build C code), openssl (the gateway's https test endpoint), procps
# and util-linux (kill, prlimit in the tests), and the real peers the tests drive: ffmpeg/ffprobe,
# mpg123, Debian's icecast2 (the head comparison), Chromium for the listener page and hls.js,
# Varnish (the cache in front of HLS), and the DJ tools that go on air in the live tests
# (libshout's `shout`, ezstream, Liquidsoap).
packages=(build-essential pkg-config openssl ca-certificates curl procps util-linux
    ffmpeg mpg123 icecast2 chromium varnish libshout-tools ezstream liquidsoap)
# Node.js drives the browser test; a machine that already has it (e.g. from NodeSource) keeps it.
command -v npm >/dev/null || packages+=(nodejs npm)
echo "==> installing test dependencies: ${packages[*]}" >&2
if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >/tmp/onair-apt.log 2>&1; then
    as_root apt-get update -q >>/tmp/onair-apt.log 2>&1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >>/tmp/onair-apt.log 2>&1 \
        || { cat /tmp/onair-apt.log >&2; exit 1; }
fi

# playwright-core drives Debian's Chromium; it never downloads a browser of its own.
echo "==> npm ci (tests/browser)" >&2
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >&2

# Build outside the clone so repeated runs (and CI on the same machine) reuse compiled crates.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/onair/target}
export CARGO_TERM_COLOR=never

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy" >&2
cargo clippy --all-targets --locked -- -D warnings
# The build without the FDK AAC encoder (README: "Mounts: MP3, AAC and Opus") stays warning-free too.
cargo clippy --locked --no-default-features -- -D warnings
# The drills are a test target that plain `cargo test` (and so --all-targets) leaves out.
cargo clippy --test drills --locked -- -D warnings
# The load generator (its own small package) and the benches compile; the long loads do not run.
echo "==> benches compile" >&2
cargo fmt --manifest-path benches/loadgen/Cargo.toml -- --check
cargo clippy --locked --manifest-path benches/loadgen/Cargo.toml -- -D warnings
bash -n benches/compare-icecast.sh
cargo bench --locked --no-run

# A real Ceph RADOS Gateway (S3) on 127.0.0.1 for the storage tests; stopped when this script
# ends. Without it the S3 tests fail (ONAIR_SKIP_S3=1 would skip them; CI never sets it).
echo "==> starting Ceph RGW" >&2
ceph_env=$(bash scripts/ceph.sh start)
eval "$ceph_env"
trap 'bash scripts/ceph.sh stop >&2 || true' EXIT

echo "==> cargo test" >&2
cargo test --locked -- --test-threads="${ONAIR_TEST_THREADS:-4}"

# Every fuzz target briefly from its committed corpus (a finding fails the run; the long runs
# are `bash scripts/fuzz.sh 900`). The first build compiles onair with the sanitizer.
echo "==> fuzzing, 15 s per target" >&2
bash scripts/fuzz.sh 15

# The disaster-recovery drills: this gateway and a second cluster for the backup site (which
# drill.sh starts and stops), about 15 minutes; prints the table of figures.
echo "==> disaster-recovery drills" >&2
bash scripts/drill.sh

# The container and Kubernetes side: Dockerfile lint, manifests, metrics and alert rules (this
# builds the release binary), then the image built with podman and smoke-run.
echo "==> deploy checks" >&2
bash scripts/check-deploy.sh
echo "==> container smoke test" >&2
bash scripts/container-smoke.sh
