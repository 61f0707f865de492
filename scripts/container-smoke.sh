#!/usr/bin/env bash
# Builds the onair container image with podman and runs it the way production does (read-only root
# file system, every capability dropped, config and cache mounted), then checks that it streams
# MP3 at the right rate, runs as the non-root user, and stops on SIGTERM with exit 0 in under 3 s
# while hundreds of listeners are connected. Prints the image size, the idle RSS and CPU, the RSS
# with those listeners, and the stop time.
#
#   bash scripts/container-smoke.sh     # on Debian bookworm, as root (or sudo); installs what it needs
#
# No Docker engine and no registry are needed: the runtime stage's base image is made locally with
# debootstrap (the tarball is cached in $ONAIR_CACHE, default ~/.cache/onair), and the release
# binary is built on the host and handed to the Dockerfile's `builder` stage with --build-context.
# Environment: ONAIR_IMAGE (tag to build, default localhost/onair:latest), ONAIR_BIN (use this
# onair binary instead of building one), CARGO_TARGET_DIR, ONAIR_DEBIAN_MIRROR, ONAIR_SMOKE_NETWORK
# (auto: port mapping, or the host's network where port mapping fails; bridge; host),
# ONAIR_SMOKE_LISTENERS (listeners connected when the container is stopped, default 200).
set -euo pipefail
# Rootful podman, debootstrap and apt-get: run as root (through sudo when started as a user).
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
cd "$(dirname "$0")/.."
ROOT=$PWD

CACHE=${ONAIR_CACHE:-$HOME/.cache/onair}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/onair/target}
IMAGE=${ONAIR_IMAGE:-localhost/onair:latest}
BASE_IMAGE=localhost/onair-base:bookworm-ca
# minbase plus ca-certificates, which the image needs for https:// S3 endpoints: the build has no
# network, so the Dockerfile finds them in the base instead of installing them.
BASE_TAR=$CACHE/debian-bookworm-minbase-ca.tar
MIRROR=${ONAIR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
APP_UID=10001
BYTES_PER_SEC=16000 # /radio.mp3 is 128 kbit/s CBR
LISTENERS=${ONAIR_SMOKE_LISTENERS:-200} # connected during the stop

say() { echo "container-smoke: $*" >&2; }
fail() {
    echo "container-smoke: FAILED: $*" >&2
    exit 1
}
# crun fails on this cgroup setup: every podman command uses runc.
pm() { podman --runtime runc "$@"; }

WORK=$(mktemp -d /tmp/onair-smoke.XXXXXX)
CID=""
BG_PIDS=()
cleanup() {
    local rc=$?
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
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
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
        apt-get update -q >>"$log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 ||
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
# shellcheck source=scripts/release-binary.sh
source scripts/release-binary.sh # the cwd is the repo root (see the cd above)
# The directory stands in for the Dockerfile's `builder` stage: same path as there.
mkdir -p "$WORK/builder/usr/local/bin"
strip --strip-debug -o "$WORK/builder/usr/local/bin/onair" "$bin"

# ---- base image: debian bookworm minbase, from a cached debootstrap tarball ----------------------
if ! pm image exists "$BASE_IMAGE"; then
    if [ ! -s "$BASE_TAR" ]; then
        say "debootstrap --variant=minbase --include=ca-certificates bookworm (about 70 s, cached in $BASE_TAR)"
        mkdir -p "$CACHE"
        rootfs=$WORK/rootfs
        timeout 900 debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
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
    timeout 300 podman --runtime runc import --quiet "$BASE_TAR" "$BASE_IMAGE" >/dev/null ||
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
URL=http://127.0.0.1:$port

# /readyz: 200 once every mount produces audio. 0: ready; 1: the container exited; 2: timed out.
wait_ready() {
    local deadline=$((SECONDS + $1))
    until curl -fsS -m 2 -o /dev/null "$URL/readyz" 2>/dev/null; do
        [ "$(pm inspect --format '{{.State.Running}}' "$CID")" = true ] || return 1
        [ $SECONDS -lt $deadline ] || return 2
        sleep 0.2
    done
}
run_host_network() {
    CID=$(pm run "${run_flags[@]}" --network=host "$IMAGE" \
        --config /etc/onair/radio.toml --listen "127.0.0.1:$port" 2>"$WORK/run.err") ||
        fail "podman run --network=host: $(cat "$WORK/run.err")"
}
# Port mapping as in production (-p); where it does not work, the host's network with --listen.
network=${ONAIR_SMOKE_NETWORK:-auto}
if [ "$network" != host ]; then
    if CID=$(pm run "${run_flags[@]}" -p "127.0.0.1:$port:8000" "$IMAGE" 2>"$WORK/run.err"); then
        say "running ${CID:0:12} on $URL (-p 127.0.0.1:$port:8000)"
        rc=0
        wait_ready 20 || rc=$?
        [ $rc -ne 1 ] || fail "the container exited during startup"
        if [ $rc -eq 2 ]; then
            [ "$network" = auto ] || fail "/readyz not 200 after 20 s through -p 127.0.0.1:$port:8000"
            say "$URL not ready after 20 s through the port mapping: trying --network=host"
            pm rm -f -t 0 "$CID" >/dev/null 2>&1 || true
            CID=""
            network=host
        fi
    else
        [ "$network" = auto ] || fail "podman run -p: $(cat "$WORK/run.err")"
        say "port mapping failed ($(tail -1 "$WORK/run.err")): trying --network=host"
        pm rm -f -t 0 "onair-smoke-$$" >/dev/null 2>&1 || true
        network=host
    fi
fi
if [ "$network" = host ]; then
    run_host_network
    say "running ${CID:0:12} on $URL (--network=host, --listen 127.0.0.1:$port)"
    rc=0
    wait_ready 20 || rc=$?
    [ $rc -ne 1 ] || fail "the container exited during startup"
    [ $rc -ne 2 ] || fail "/readyz not 200 after 20 s: $(curl -sS -m 2 "$URL/readyz" 2>&1 || true)"
fi

# ---- stream /radio.mp3: MPEG sync at the start, 16000 bytes/s after the burst ----------------------
stream=$WORK/stream.mp3
curl -N -sS -m 7 -D "$WORK/headers" -o "$stream" "$URL/radio.mp3" 2>/dev/null &
curl_pid=$!
BG_PIDS+=("$curl_pid")
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

curl -fsS -m 2 -o "$WORK/status.json" "$URL/status-json.xsl" || fail "GET /status-json.xsl"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))["icestats"]["source"]' "$WORK/status.json" ||
    fail "/status-json.xsl is not Icecast status JSON: $(head -c 300 "$WORK/status.json")"
curl -fsS -m 2 -o "$WORK/metrics" "$URL/metrics" || fail "GET /metrics"
grep -q '^onair_listeners{' "$WORK/metrics" || fail "/metrics has no onair_listeners"
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

# ---- listeners: LISTENERS streams of /radio.mp3, held until the server closes them ----------------
cat >"$WORK/listeners.py" <<'EOF'
import selectors, socket, sys, time
host, port, n, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /radio.mp3 HTTP/1.0\r\nHost: onair\r\nUser-Agent: container-smoke\r\n\r\n")
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("connected", flush=True)
left, deadline = n, time.monotonic() + limit
while left and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.2):
        try:
            data = key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            left -= 1
print(f"open {left}", flush=True)
EOF
python3 "$WORK/listeners.py" 127.0.0.1 "$port" "$LISTENERS" 20 >"$WORK/listeners.out" 2>&1 &
listeners_pid=$!
BG_PIDS+=("$listeners_pid")
deadline=$((SECONDS + 15))
until grep -q connected "$WORK/listeners.out"; do
    kill -0 $listeners_pid 2>/dev/null || fail "$LISTENERS listeners could not connect: $(cat "$WORK/listeners.out")"
    [ $SECONDS -lt $deadline ] || fail "$LISTENERS listeners not connected after 15 s"
    sleep 0.2
done
deadline=$((SECONDS + 10))
while :; do
    curl -fsS -m 2 -o "$WORK/metrics" "$URL/metrics" || fail "GET /metrics"
    n=$(awk '/^onair_listeners\{mount="\/radio.mp3",protocol="http"\}/ {print $2}' "$WORK/metrics")
    [ "$n" != "$LISTENERS" ] || break
    [ $SECONDS -lt $deadline ] || fail "onair_listeners{mount=\"/radio.mp3\",protocol=\"http\"} is ${n:-missing}, expected $LISTENERS"
    sleep 0.2
done
sleep 1
rss_busy_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
c1=$(ticks)
sleep 3
c2=$(ticks)
cpu_busy_pct=$(python3 -c "import os; print(round(($c2 - $c1) / os.sysconf('SC_CLK_TCK') / 3 * 100, 1))")

# ---- stop with the listeners connected: SIGTERM, exit 0, quickly ---------------------------------
t0=$(date +%s.%N)
timeout 30 podman --runtime runc stop -t 10 "$CID" >/dev/null || fail "podman stop"
stop_secs=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
code=$(pm inspect --format '{{.State.ExitCode}}' "$CID")
[ "$code" = 0 ] || fail "exit code $code after podman stop, expected 0"
python3 -c "import sys; sys.exit(0 if $stop_secs < 3 else 1)" || fail "podman stop took $stop_secs s (limit 3 s)"
wait $listeners_pid || fail "the listeners' client failed: $(cat "$WORK/listeners.out")"
grep -q '^open 0$' "$WORK/listeners.out" || fail "listener connections still open after the stop: $(cat "$WORK/listeners.out")"

python3 - "$IMAGE" "$image_bytes" "$rss_kb" "$cpu_pct" "$stop_secs" "$build_secs" "$rss_busy_kb" "$LISTENERS" "$cpu_busy_pct" <<'EOF'
import sys
image, size, rss, cpu, stop, build, busy, n, cpu_busy = sys.argv[1:]
print(f"container-smoke: ok: {image} {int(size) / 1e6:.1f} MB (built in {build} s); "
      f"idle (the demo's 4 mounts, no listener): RSS {int(rss) / 1024:.1f} MiB, CPU {cpu} % of a core; "
      f"{n} listeners: RSS {int(busy) / 1024:.1f} MiB, CPU {cpu_busy} %; "
      f"podman stop with them connected: {stop} s, exit 0")
EOF
