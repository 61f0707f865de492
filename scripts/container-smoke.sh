#!/usr/bin/env bash
# Builds the onair container image with podman and runs it the way production does (read-only root
# file system, every capability dropped, config and cache mounted), then checks that it streams
# MP3 at the right rate, runs as the non-root user, and stops on SIGTERM with exit 0 in under 3 s.
# Prints the image size, the idle RSS and CPU, and the stop time.
#
#   bash scripts/container-smoke.sh          # as root on Debian bookworm; installs what it needs
#
# No Docker engine and no registry are needed: the runtime stage's base image is made locally with
# debootstrap (the tarball is cached in $ONAIR_CACHE, default ~/.cache/onair), and the release
# binary is built on the host and handed to the Dockerfile's `builder` stage with --build-context.
# Environment: ONAIR_IMAGE (tag to build, default localhost/onair:latest), ONAIR_BIN (use this
# onair binary instead of building one), CARGO_TARGET_DIR, ONAIR_DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CACHE=${ONAIR_CACHE:-$HOME/.cache/onair}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/onair/target}
IMAGE=${ONAIR_IMAGE:-localhost/onair:latest}
BASE_IMAGE=localhost/onair-base:bookworm
BASE_TAR=$CACHE/debian-bookworm-minbase.tar
MIRROR=${ONAIR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
APP_UID=10001
BYTES_PER_SEC=16000 # /radio.mp3 is 128 kbit/s CBR

say() { echo "container-smoke: $*" >&2; }
fail() {
    echo "container-smoke: FAILED: $*" >&2
    exit 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# crun fails on this cgroup setup: every podman command uses runc.
pm() { as_root podman --runtime runc "$@"; }

WORK=$(mktemp -d /tmp/onair-smoke.XXXXXX)
CID=""
cleanup() {
    local rc=$?
    if [ -n "$CID" ]; then
        if [ $rc -ne 0 ]; then
            echo "---- container logs (last 40 lines) ----" >&2
            pm logs --tail 40 "$CID" >&2 2>&1 || true
        fi
        pm rm -f -t 0 "$CID" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ---------------------------------------------------------------------------------------
apt_install() {
    local log=$WORK/apt.log
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
        as_root apt-get update -q >>"$log" 2>&1 || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 ||
            {
                cat "$log" >&2
                fail "apt-get install $*"
            }
    fi
}
need=()
for tool in podman:podman runc:runc debootstrap:debootstrap curl:curl strip:binutils python3:python3; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt_install "${need[@]}"
fi

# ---- the release binary (built on the host: downloading crates inside a build fails here) -------
bin=${ONAIR_BIN:-$CARGO_TARGET_DIR/release/onair}
if [ -z "${ONAIR_BIN:-}" ]; then
    if [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$bin" -print -quit)" ]; then
        say "cargo build --release --locked"
        CARGO_TERM_COLOR=never cargo build --release --locked >"$WORK/cargo.log" 2>&1 ||
            {
                cat "$WORK/cargo.log" >&2
                fail "cargo build --release"
            }
    fi
fi
[ -x "$bin" ] || fail "no onair binary at $bin"
# The directory stands in for the Dockerfile's `builder` stage: same path as there.
mkdir -p "$WORK/builder/usr/local/bin"
strip --strip-debug -o "$WORK/builder/usr/local/bin/onair" "$bin"

# ---- base image: debian bookworm minbase, from a cached debootstrap tarball ----------------------
if ! pm image exists "$BASE_IMAGE"; then
    if [ ! -s "$BASE_TAR" ]; then
        say "debootstrap --variant=minbase bookworm (about 70 s, cached in $BASE_TAR)"
        mkdir -p "$CACHE"
        rootfs=$WORK/rootfs
        timeout 900 debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
            {
                tail -30 "$WORK/debootstrap.log" >&2
                fail "debootstrap"
            }
        # Trimmed like debian:bookworm-slim: no apt lists and caches, logs, man and info pages,
        # translations, and of the docs only the copyright files.
        (
            cd "$rootfs"
            rm -rf var/lib/apt/lists/* var/cache/apt/* var/log/* usr/share/man/* usr/share/info/*
            find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
            find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
            find usr/share/doc -mindepth 1 -type d -empty -delete
        )
        tar -C "$rootfs" --numeric-owner -cf "$BASE_TAR.tmp" .
        mv "$BASE_TAR.tmp" "$BASE_TAR"
        rm -rf "$rootfs"
    fi
    say "podman import $BASE_TAR as $BASE_IMAGE"
    timeout 300 podman import --quiet "$BASE_TAR" "$BASE_IMAGE" >/dev/null ||
        fail "podman import $BASE_TAR"
fi

# ---- build ---------------------------------------------------------------------------------------
old_id=$(pm image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
say "podman build -t $IMAGE"
build_start=$SECONDS
timeout 900 podman --runtime runc build \
    --pull=never --network=none \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --build-context builder="$WORK/builder" \
    -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 ||
    {
        cat "$WORK/build.log" >&2
        fail "podman build"
    }
build_secs=$((SECONDS - build_start))
new_id=$(pm image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    pm rmi "$old_id" >/dev/null 2>&1 || true # the previous build of this tag, now dangling
fi
image_bytes=$(pm image inspect --format '{{.Size}}' "$IMAGE")

# ---- run as production does ----------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
mkdir -p "$WORK/cache"
chown "$APP_UID:$APP_UID" "$WORK/cache"
run_flags=(
    -d --name "onair-smoke-$$" --read-only --cap-drop=ALL --security-opt=no-new-privileges
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096
    -v "$ROOT/config/radio.toml:/etc/onair/radio.toml:ro"
    -v "$WORK/cache:/var/cache/onair"
)
network_note="port mapping -p 127.0.0.1:$port:8000"
if ! CID=$(pm run "${run_flags[@]}" -p "127.0.0.1:$port:8000" "$IMAGE" 2>"$WORK/run.err"); then
    CID=""
    pm rm -f "onair-smoke-$$" >/dev/null 2>&1 || true
    say "port mapping failed ($(tail -1 "$WORK/run.err")): using --network=host with --listen 127.0.0.1:$port"
    network_note="--network=host (port mapping failed here)"
    CID=$(pm run "${run_flags[@]}" --network=host "$IMAGE" \
        --config /etc/onair/radio.toml --listen "127.0.0.1:$port") || fail "podman run: $(cat "$WORK/run.err")"
fi
URL=http://127.0.0.1:$port
say "running $CID on $URL ($network_note)"

# /readyz: 200 once every mount produces audio. Bounded: 20 s.
deadline=$((SECONDS + 20))
until curl -fsS -m 2 -o /dev/null "$URL/readyz" 2>/dev/null; do
    [ "$(pm inspect --format '{{.State.Running}}' "$CID")" = true ] || fail "the container exited during startup"
    [ $SECONDS -lt $deadline ] || fail "/readyz not 200 after 20 s: $(curl -sS -m 2 "$URL/readyz" 2>&1 || true)"
    sleep 0.2
done

# ---- stream /radio.mp3: MPEG sync at the start, 16000 bytes/s after the burst ----------------------
stream=$WORK/stream.mp3
curl -N -sS -m 7 -D "$WORK/headers" -o "$stream" "$URL/radio.mp3" 2>/dev/null &
curl_pid=$!
sleep 2
s1=$(stat -c %s "$stream" 2>/dev/null || echo 0)
t1=$(date +%s.%N)
sleep 4
s2=$(stat -c %s "$stream" 2>/dev/null || echo 0)
t2=$(date +%s.%N)
wait $curl_pid || true # curl ends on its -m 7 time limit (exit 28): the stream never ends by itself
rate=$(python3 -c "print(round(($s2 - $s1) / ($t2 - $t1)))")
grep -qi '^content-type: audio/mpeg' "$WORK/headers" || fail "/radio.mp3: no Content-Type: audio/mpeg: $(cat "$WORK/headers")"
grep -qi '^icy-name:' "$WORK/headers" || fail "/radio.mp3: no icy-name header"
sync=$(head -c 2 "$stream" | od -An -tx1 | tr -d ' \n')
python3 - "$sync" <<'EOF' || fail "/radio.mp3 does not start with an MPEG audio layer III frame sync (got 0x$sync)"
import sys
h = sys.argv[1]
b0, b1 = (int(h[0:2], 16), int(h[2:4], 16)) if len(h) == 4 else (0, 0)
sys.exit(0 if b0 == 0xFF and b1 & 0xE0 == 0xE0 and b1 & 0x06 == 0x02 else 1)
EOF
python3 -c "import sys; r=$rate; sys.exit(0 if 0.9 * $BYTES_PER_SEC <= r <= 1.1 * $BYTES_PER_SEC else 1)" ||
    fail "/radio.mp3 delivered $rate bytes/s over 4 s, expected $BYTES_PER_SEC (128 kbit/s)"
say "/radio.mp3: $(stat -c %s "$stream") bytes in 7 s, $rate bytes/s after the burst, starts with 0x$sync"

curl -fsS -m 2 "$URL/status-json.xsl" | python3 -c 'import json, sys; json.load(sys.stdin)["icestats"]' ||
    fail "/status-json.xsl is not Icecast status JSON"
curl -fsS -m 2 "$URL/metrics" | grep -q '^onair_listeners{' || fail "/metrics has no onair_listeners"
pm logs "$CID" >"$WORK/logs" 2>&1 || fail "podman logs"
python3 - "$WORK/logs" <<'EOF' || fail "the logs are not JSON lines with timestamp, level and message: $(head -3 "$WORK/logs")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no log line"
for line in lines:
    d = json.loads(line)
    assert {"timestamp", "level", "message"} <= d.keys(), d
EOF

# ---- user, read-only root file system, writable cache -------------------------------------------
pid=$(pm inspect --format '{{.State.Pid}}' "$CID")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
[ "$uids" = "$APP_UID $APP_UID $APP_UID $APP_UID" ] || fail "onair runs with UIDs '$uids', expected $APP_UID"
[ "$gids" = "$APP_UID $APP_UID $APP_UID $APP_UID" ] || fail "onair runs with GIDs '$gids', expected $APP_UID"
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
[ "$capeff" = 0000000000000000 ] || fail "onair has capabilities: CapEff=$capeff"
[ "$(pm exec "$CID" id -u)" = "$APP_UID" ] || fail "podman exec: id -u is not $APP_UID"
[ "$(pm exec "$CID" cat /proc/1/comm)" = onair ] || fail "PID 1 in the container is not onair"
if pm exec "$CID" touch /usr/share/onair/x 2>/dev/null; then fail "the root file system is writable"; fi
pm exec "$CID" touch /var/cache/onair/.w || fail "/var/cache/onair is not writable by $APP_UID"

# ---- idle: no listener, RSS and CPU -------------------------------------------------------------
sleep 1
rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c1=$(ticks)
sleep 5
c2=$(ticks)
cpu_pct=$(python3 -c "import os; print(round(($c2 - $c1) / os.sysconf('SC_CLK_TCK') / 5 * 100, 1))")

# ---- stop: SIGTERM, exit 0, quickly -----------------------------------------------------------------
t0=$(date +%s.%N)
timeout 30 podman --runtime runc stop -t 10 "$CID" >/dev/null || fail "podman stop"
stop_secs=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
code=$(pm inspect --format '{{.State.ExitCode}}' "$CID")
[ "$code" = 0 ] || fail "exit code $code after podman stop, expected 0"
python3 -c "import sys; sys.exit(0 if $stop_secs < 3 else 1)" || fail "podman stop took $stop_secs s (limit 3 s)"

python3 - "$IMAGE" "$image_bytes" "$rss_kb" "$cpu_pct" "$stop_secs" "$build_secs" <<'EOF'
import sys
image, size, rss, cpu, stop, build = sys.argv[1:]
print(f"container-smoke: ok: {image} {int(size) / 1e6:.1f} MB (built in {build} s); "
      f"idle RSS {int(rss) / 1024:.1f} MiB, idle CPU {cpu} % of a core (2 mounts, no listener); "
      f"podman stop {stop} s, exit 0")
EOF
