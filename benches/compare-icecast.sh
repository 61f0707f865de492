#!/usr/bin/env bash
# Side-by-side load comparison of onair and Icecast 2 on this machine, in one run.
#
#   bash benches/compare-icecast.sh                       # N = 1000 5000 10000 19900, 30 s windows
#   bash benches/compare-icecast.sh --ns "1000 5000" --seconds 10 --no-storm --no-slow
#
# Installs Debian's icecast2 and ffmpeg (needs root or sudo), builds onair (release) and the load
# generator (benches/loadgen), then for every N starts a fresh Icecast fed by ffmpeg with the
# 128 kbps CBR fixture, loads it, stops it, starts a fresh onair playing --library, loads it
# with the same settings, stops it. Then a connect storm and a slow-reader run against both.
# Prints a markdown table with onair/Icecast ratios; everything (JSON lines, per-run reports, server
# logs) stays in the output directory. Every wait is bounded; every process it started is stopped on
# exit, including Ctrl-C.
#
# Options (or the environment variables in brackets):
#   --ns "LIST"         listener counts [NS, default "1000 5000 10000 19900"]
#   --seconds S         measurement window per run [WINDOW, default 30]
#   --rate R            connections per second, an integer [RATE, default 500]
#   --storm-n N         listeners connecting at the same instant; 0 = no storm run [STORM_N, default 5000]
#   --slow-n N          listeners in the slow-reader run; 0 = no slow run [SLOW_N, default 1000]
#   --slow-fraction F   of which this fraction reads slowly [SLOW_FRACTION, default 0.1]
#   --slow-bps B        at B bytes/s [SLOW_BPS, default 4000, a quarter of the stream's rate]
#   --no-storm, --no-slow, --no-install
#   --library PATH      onair's library: a folder, or one file [ONAIR_LIBRARY, default config/media,
#                       the demo library]; tests/fixtures/media/01-cbr128.mp3 gives onair the very
#                       track Icecast relays (onair still decodes and re-encodes it)
#   --out DIR           output directory [OUT, default a new /tmp/onair-compare.XXXXXX]
# Also: ONAIR_BIN (use this onair binary instead of building), ICECAST_PORT (18100), ONAIR_PORT
# (18200), CARGO_TARGET_DIR (default ~/.cache/onair/target), NICE_LEVEL (niceness of cargo, the load
# generator and both servers, default 10: one level for all, so that neither side starves the other).
#
# Facts that shape it: a process here may hold at most 20,000 open files (the hard limit), so
# 19,900 is the largest N; both servers get `ulimit -n` raised to the hard limit. Icecast 2.4 listens
# with a backlog of 5: that is part of what a connect storm measures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NS=${NS:-"1000 5000 10000 19900"}
WINDOW=${WINDOW:-30}
RATE=${RATE:-500}
STORM_N=${STORM_N:-5000}
SLOW_N=${SLOW_N:-1000}
SLOW_FRACTION=${SLOW_FRACTION:-0.1}
SLOW_BPS=${SLOW_BPS:-4000}
ICECAST_PORT=${ICECAST_PORT:-18100}
ONAIR_PORT=${ONAIR_PORT:-18200}
ONAIR_LIBRARY=${ONAIR_LIBRARY:-config/media}
INSTALL=1
OUT=${OUT:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --ns) NS=$2; shift 2 ;;
        --seconds) WINDOW=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --storm-n) STORM_N=$2; shift 2 ;;
        --slow-n) SLOW_N=$2; shift 2 ;;
        --slow-fraction) SLOW_FRACTION=$2; shift 2 ;;
        --slow-bps) SLOW_BPS=$2; shift 2 ;;
        --no-storm) STORM_N=0; shift ;;
        --no-slow) SLOW_N=0; shift ;;
        --no-install) INSTALL=0; shift ;;
        --library) ONAIR_LIBRARY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in $NS $STORM_N $SLOW_N; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -le 19900 ] || { echo "listener counts must be 0..19900: $n" >&2; exit 2; }
done

OUT=${OUT:-$(mktemp -d /tmp/onair-compare.XXXXXX)}
mkdir -p "$OUT"
chmod 755 "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/onair/target}
export CARGO_TERM_COLOR=never
TRACK=$ROOT/tests/fixtures/media/01-cbr128.mp3
PASS=bench-$$-$RANDOM
NICE=(nice -n "${NICE_LEVEL:-10}")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log() { echo "==> $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- processes we start, stopped on any exit ------------------------------------------------------
PIDS=()
stop_pid() { # pid: TERM, wait up to 5 s, then KILL; forgotten afterwards (its number may be reused)
    local pid=$1 i keep=()
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${PIDS[@]}"; do [ "$i" = "$pid" ] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, seconds: until it answers 200
    local url=$1 i
    for i in $(seq $(($2 * 10))); do
        [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "$url" || true)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
port_free() { # port: fails when something already listens there (it would answer instead of ours)
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "port $1 is already in use on 127.0.0.1: stop what listens there, or set ICECAST_PORT/ONAIR_PORT" >&2
        return 1
    fi
}
alive() { # pid name: fails when the server we started has exited
    kill -0 "$1" 2>/dev/null || { echo "$2 exited at start" >&2; return 1; }
}
wait_stream() { # url, seconds: until the stream gives bytes (a live GET never ends: 1 s of it)
    local i got
    for i in $(seq "$2"); do
        got=$(curl -s -m 1 -o /dev/null -w '%{size_download}' "$1" 2>/dev/null || true)
        [ "${got:-0}" -gt 0 ] 2>/dev/null && return 0
        sleep 1
    done
    return 1
}

# --- install and build ----------------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
    pkgs=(icecast2 ffmpeg curl)
    command -v python3 >/dev/null || pkgs+=(python3)
    log "installing ${pkgs[*]}"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$OUT/apt.log" 2>&1; then
        as_root apt-get update -q >>"$OUT/apt.log" 2>&1
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$OUT/apt.log" 2>&1 \
            || { cat "$OUT/apt.log" >&2; exit 1; }
    fi
fi
for c in icecast2 ffmpeg curl python3; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

if [ -z "${ONAIR_BIN:-}" ]; then
    log "cargo build --release --locked (onair)"
    "${NICE[@]}" cargo build --release --locked >&2
    ONAIR_BIN=$CARGO_TARGET_DIR/release/onair
    ONAIR_REV=$(git describe --always --dirty 2>/dev/null || echo '?')
fi
ONAIR_REV=${ONAIR_REV:-"$(basename "$ONAIR_BIN") (given)"}
log "cargo build --release --locked (benches/loadgen)"
"${NICE[@]}" cargo build --release --locked --manifest-path benches/loadgen/Cargo.toml >&2
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
# Private copies, so a rebuild during the run cannot change what is measured.
cp "$ONAIR_BIN" "$OUT/onair"
cp "$LOADGEN" "$OUT/loadgen"
ONAIR_BIN=$OUT/onair
LOADGEN=$OUT/loadgen

HARD=$(ulimit -Hn)
ulimit -n "$HARD"
log "open files: $HARD per process; results in $OUT"

# --- Icecast --------------------------------------------------------------------------------------
# The same buffers as onair's defaults: burst 2 s and queue 10 s of 128 kbps.
ICE_DIR=$OUT/icecast
mkdir -p "$ICE_DIR/log"
cat >"$ICE_DIR/icecast.xml" <<EOF
<icecast>
    <location>benchmark</location>
    <admin>bench@localhost</admin>
    <limits>
        <clients>20000</clients>
        <sources>2</sources>
        <!-- Undocumented in 2.4: listeners are served by their source's own thread. -->
        <threadpool>5</threadpool>
        <queue-size>160000</queue-size>
        <client-timeout>30</client-timeout>
        <header-timeout>15</header-timeout>
        <source-timeout>10</source-timeout>
        <burst-on-connect>1</burst-on-connect>
        <burst-size>32000</burst-size>
    </limits>
    <authentication>
        <source-password>$PASS</source-password>
        <relay-password>$PASS</relay-password>
        <admin-user>admin</admin-user>
        <admin-password>$PASS</admin-password>
    </authentication>
    <hostname>127.0.0.1</hostname>
    <listen-socket>
        <port>$ICECAST_PORT</port>
        <bind-address>127.0.0.1</bind-address>
    </listen-socket>
    <fileserve>1</fileserve>
    <paths>
        <basedir>/usr/share/icecast2</basedir>
        <logdir>$ICE_DIR/log</logdir>
        <webroot>/usr/share/icecast2/web</webroot>
        <adminroot>/usr/share/icecast2/admin</adminroot>
        <pidfile>$ICE_DIR/icecast.pid</pidfile>
    </paths>
    <logging>
        <accesslog>access.log</accesslog>
        <errorlog>error.log</errorlog>
        <loglevel>2</loglevel>
        <logsize>100000</logsize>
    </logging>
    <security>
        <chroot>0</chroot>
    </security>
</icecast>
EOF
# Icecast refuses to run as root: run it as Debian's icecast2 user, limits inherited from here.
ICE_RUN=()
if [ "$(id -u)" -eq 0 ]; then
    chown -R icecast2:icecast "$ICE_DIR"
    ICE_RUN=(setpriv --reuid=icecast2 --regid=icecast --clear-groups)
fi

ICE_PID= FF_PID= ONAIR_PID=
start_icecast() {
    port_free "$ICECAST_PORT"
    "${NICE[@]}" "${ICE_RUN[@]}" icecast2 -c "$ICE_DIR/icecast.xml" >>"$ICE_DIR/stdout.log" 2>&1 &
    ICE_PID=$!
    PIDS+=("$ICE_PID")
    wait_http "http://127.0.0.1:$ICECAST_PORT/status-json.xsl" 15 \
        || { echo "Icecast did not start; see $ICE_DIR/log/error.log" >&2; tail -5 "$ICE_DIR/log/error.log" >&2; exit 1; }
    alive "$ICE_PID" Icecast
    "${NICE[@]}" ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$TRACK" -c:a copy \
        -content_type audio/mpeg -f mp3 "icecast://source:$PASS@127.0.0.1:$ICECAST_PORT/radio.mp3" \
        >>"$ICE_DIR/ffmpeg.log" 2>&1 &
    FF_PID=$!
    PIDS+=("$FF_PID")
    wait_stream "http://127.0.0.1:$ICECAST_PORT/radio.mp3" 15 \
        || { echo "Icecast has no stream; see $ICE_DIR/ffmpeg.log" >&2; exit 1; }
    alive "$FF_PID" ffmpeg
    sleep 3 # a full burst's worth of queue before the first listener
}
stop_icecast() { stop_pid "$FF_PID"; stop_pid "$ICE_PID"; FF_PID= ICE_PID=; }

# --- onair ----------------------------------------------------------------------------------------
[ -e "$ONAIR_LIBRARY" ] || { echo "no library at $ONAIR_LIBRARY" >&2; exit 2; }
LIBRARY=$(realpath "$ONAIR_LIBRARY")
if [ -f "$LIBRARY" ]; then
    mkdir -p "$OUT/library"
    cp "$LIBRARY" "$OUT/library/"
    LIBRARY=$OUT/library
fi
cat >"$OUT/onair.toml" <<EOF
[station]
name = "Onair Benchmark"
description = "compare-icecast.sh"
genre = "Various"
url = "http://127.0.0.1:$ONAIR_PORT/"

[server]
listen = "127.0.0.1:$ONAIR_PORT"

[library]
kind = "local"
path = "$LIBRARY"

[playlist]
order = "shuffle"

[[mount]]
path = "/radio.mp3"
codec = "mp3"
bitrate = 128
max_listeners = 20000
EOF
start_onair() {
    port_free "$ONAIR_PORT"
    "${NICE[@]}" "$ONAIR_BIN" --config "$OUT/onair.toml" >>"$OUT/onair.log" 2>&1 &
    ONAIR_PID=$!
    PIDS+=("$ONAIR_PID")
    wait_http "http://127.0.0.1:$ONAIR_PORT/readyz" 30 \
        || { echo "onair did not become ready; see $OUT/onair.log" >&2; tail -5 "$OUT/onair.log" >&2; exit 1; }
    alive "$ONAIR_PID" onair
    sleep 3 # a full burst's worth of ring before the first listener
}
stop_onair() { stop_pid "$ONAIR_PID"; ONAIR_PID=; }

# --- one measurement: fresh server, one load, server stopped ---------------------------------------
# run_one server kind n [loadgen options…]
run_one() {
    local server=$1 kind=$2 n=$3
    shift 3
    local port pid name=$server-$kind-$n budget
    if [ "$server" = icecast ]; then start_icecast; port=$ICECAST_PORT; pid=$ICE_PID
    else start_onair; port=$ONAIR_PORT; pid=$ONAIR_PID; fi
    log "$name: $n listeners ($kind), window ${WINDOW}s"
    # The load generator bounds itself; this is a backstop: ramp + timeouts + window + margin.
    budget=$(( n / RATE + 15 + 2 + WINDOW + 5 + 60 ))
    # In the background and waited for, so that a signal to this script stops it at once.
    timeout --kill-after=5 "$budget" "${NICE[@]}" "$LOADGEN" "http://127.0.0.1:$port/radio.mp3" \
        -n "$n" --rate "$RATE" --seconds "$WINDOW" --pid "$pid" --label "$name" --json "$@" \
        >"$OUT/$name.json" 2>"$OUT/$name.txt" &
    local lg=$!
    PIDS+=("$lg")
    # Exit 1 is a storm whose verdict failed (Icecast's does, from its listen backlog of 5).
    wait "$lg" || echo "load generator exited $? for $name; see $OUT/$name.txt" >&2
    stop_pid "$lg"
    cat "$OUT/$name.txt" >&2
    sed "s/^{/{\"server\":\"$server\",\"kind\":\"$kind\",/" "$OUT/$name.json" >>"$OUT/results.jsonl"
    if [ "$server" = icecast ]; then stop_icecast; else stop_onair; fi
    sleep 2 # let the closed connections drain before the next server binds
}

: >"$OUT/results.jsonl"
for n in $NS; do
    run_one icecast ramp "$n"
    run_one onair ramp "$n"
done
if [ "$STORM_N" -gt 0 ]; then
    run_one icecast storm "$STORM_N" --storm
    run_one onair storm "$STORM_N" --storm
fi
if [ "$SLOW_N" -gt 0 ]; then
    # Long enough for a slow reader to fall a whole queue (10 s) behind and be seen dropped.
    slow_window=$(( WINDOW > 45 ? WINDOW : 45 ))
    run_one icecast slow "$SLOW_N" --slow-fraction "$SLOW_FRACTION" --slow-bps "$SLOW_BPS" --seconds "$slow_window"
    run_one onair slow "$SLOW_N" --slow-fraction "$SLOW_FRACTION" --slow-bps "$SLOW_BPS" --seconds "$slow_window"
fi

# --- the table ------------------------------------------------------------------------------------
{
    echo
    echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/{print $2}') GiB, Linux $(uname -r); $(icecast2 -v 2>/dev/null | head -1) (Debian), onair $ONAIR_REV"
    echo "Other load on the machine (load average 1/5/15 min): $LOAD_BEFORE at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "Load: ${RATE} connections/s, ${WINDOW} s window after all connected; Icecast relays $(basename "$TRACK") from ffmpeg, onair plays ${ONAIR_LIBRARY#"$ROOT"/} re-encoded at 128 kbps; cells are Icecast / onair (onair ÷ Icecast)"
    echo
    python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["kind"], r["asked"]), {})[r["server"]] = r

def f(x, d=1):
    return "?" if x is None else f"{x:,.{d}f}"

def cell(i, o, key, d=1, scale=1.0, ratio=True):
    a = i.get(key) if i else None
    b = o.get(key) if o else None
    a = None if a is None else a * scale
    b = None if b is None else b * scale
    s = f"{f(a, d)} / {f(b, d)}"
    if ratio and a not in (None, 0) and b is not None:
        r = b / a
        s += f" (×{r:.2f})" if r >= 0.1 or r == 0 else f" (÷{1 / r:,.0f})"
    return s

def held(i, o):
    def one(r):
        if not r:
            return "?"
        s = f"{r['held']:,}"
        extra = []
        if r["failed"]:
            extra.append(f"{r['failed']:,} failed")
        if r["dropped"]:
            extra.append(f"{r['dropped']:,} dropped")
        return s + (f" ({', '.join(extra)})" if extra else "")
    return f"{one(i)} / {one(o)}"

def below(i, o):
    return f"{i['below_99pct'] if i else '?'} / {o['below_99pct'] if o else '?'}"

print("| run | listeners held | below 99 % of 128 kbps | min kbps | CPU % of a core | CPU % per 1,000 listeners | RSS MiB | RSS per listener KiB | first byte p50 ms | first byte p99 ms | first byte max ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
order = {"ramp": 0, "storm": 1, "slow": 2}
for (kind, n), s in sorted(by.items(), key=lambda k: (order.get(k[0][0], 9), k[0][1])):
    i, o = s.get("icecast"), s.get("onair")
    label = {"ramp": f"{n:,}", "storm": f"storm: {n:,} at once", "slow": f"slow: {n:,}, {(i or o)['slow']:,} slow readers"}[kind]
    rss = lambda r: None if not r or r.get("server_rss_during_kib") is None else r["server_rss_during_kib"] / 1024
    print("| " + " | ".join([
        label,
        held(i, o),
        below(i, o),
        cell(i, o, "kbps_min", 1, ratio=False),
        cell(i, o, "server_cpu_pct", 1),
        cell(i, o, "server_cpu_pct_per_1k", 2),
        f"{f(rss(i))} / {f(rss(o))}",
        cell(i, o, "server_rss_per_listener_b", 2, scale=1 / 1024),
        cell(i, o, "ttfb_ms_p50", 1),
        cell(i, o, "ttfb_ms_p99", 1),
        cell(i, o, "ttfb_ms_max", 0),
    ]) + " |")

slow = [s for (k, _), s in by.items() if k == "slow"]
for s in slow:
    print()
    for name in ("icecast", "onair"):
        r = s.get(name)
        if r:
            drop = f"{r['slow_dropped']:,} of {r['slow']:,} slow readers dropped"
            if r['slow_dropped']:
                drop += f" (seen a median {f(r['slow_drop_s_p50'])} s into the {f(r['window_s'], 0)} s window)"
            else:
                drop += f" in the {f(r['window_s'], 0)} s window"
            if r['held_slow']:
                drop += f", {r['held_slow']:,} still connected at {f(r.get('slow_kbps_median'))} kbps"
            print(f"- slow-reader run, {name}: {drop}; the other listeners: min {f(r['kbps_min'])} kbps, {r['below_99pct']} below 99 %")
print()
print("Load generator's own CPU (% of a core, over the window): " + ", ".join(
    f"{r['label']} {f(r['self_cpu_pct'])}" for r in rows))
PY
} | tee "$OUT/table.md"
log "table: $OUT/table.md; raw: $OUT/results.jsonl, $OUT/*.txt"
