#!/usr/bin/env bash
# scripts/ceph.sh — onair's throwaway S3 storage for tests: a real single-node Ceph cluster
# (one monitor, one RAM-backed "memstore" OSD, one RADOS Gateway) listening on 127.0.0.1 only,
# built from Debian's Ceph 16 packages. Not a mock: S3 requests are served by the real radosgw.
#
#   bash scripts/ceph.sh start   # install packages if missing, start (or reuse) the cluster,
#                                # create the S3 user and bucket, print `export` lines on stdout;
#                                # if only radosgw is gone (a test killed it), restart just it
#                                # (the objects survive; its new pid is in $ONAIR_CEPH_DIR/pid.rgw)
#   bash scripts/ceph.sh env     # print the `export` lines of the running cluster (exit 1 if down)
#   bash scripts/ceph.sh stop    # stop the daemons (by recorded pid) and delete the state dir
#   bash scripts/ceph.sh status  # one line: running or not
#
# Use from a script (a failed start must fail the caller, so do not wrap it in `eval "$(...)"`):
#   lines=$(bash scripts/ceph.sh start); eval "$lines"; trap 'bash scripts/ceph.sh stop' EXIT
#
# Everything but the export lines goes to stderr. `start` is idempotent and serialized by a lock:
# with the cluster up it only prints the exports again. Settings (all optional):
#   ONAIR_CEPH_DIR   state dir (default ${TMPDIR:-/tmp}/onair-ceph-<uid>-<rgw port>)
#   ONAIR_CEPH_RGW_PORT (7480)  ONAIR_CEPH_MON_PORT (3300)  ONAIR_CEPH_BUCKET (radio-test)
#   ONAIR_CEPH_TLS_PORT (7443: the same gateway over https, with a throwaway CA made by openssl;
#                        0 turns it off; skipped when openssl is missing)
#   ONAIR_CEPH_ACCESS_KEY / ONAIR_CEPH_SECRET_KEY  ONAIR_CEPH_RAM_BYTES (OSD capacity, 2 GiB)
#   ONAIR_CEPH_WAIT (seconds allowed for each daemon to come up, 120)
set -euo pipefail
unset CEPH_ARGS

rgw_port=${ONAIR_CEPH_RGW_PORT:-7480}
mon_port=${ONAIR_CEPH_MON_PORT:-3300}
tls_port=${ONAIR_CEPH_TLS_PORT:-7443}
state=${ONAIR_CEPH_DIR:-${TMPDIR:-/tmp}/onair-ceph-$(id -u)-$rgw_port}
bucket=${ONAIR_CEPH_BUCKET:-radio-test}
access_key=${ONAIR_CEPH_ACCESS_KEY:-onair-test}
secret_key=${ONAIR_CEPH_SECRET_KEY:-onair-test-secret-key-0123456789}
ram_bytes=${ONAIR_CEPH_RAM_BYTES:-2147483648}
wait_s=${ONAIR_CEPH_WAIT:-120}
region=us-east-1
s3_user=onair-test
endpoint=http://127.0.0.1:$rgw_port
tls=$state/tls
conf=$state/ceph.conf
tag=$state/.onair-ceph          # marks a dir this script created (and may wipe)

say() { printf 'ceph.sh: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes
# Daemons are started in the foreground (-f) as our background jobs; their pids are kept in
# $state/pid.<name>. A pid counts as ours only while its command line names our ceph.conf.
is_ours() {
    local pid
    pid=$(cat "$state/pid.$1" 2>/dev/null) || return 1
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$conf"
}
not_dead() { # the process exists and is not a zombie (used right after the fork)
    local pid st
    pid=$(cat "$state/pid.$1" 2>/dev/null) || return 1
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
spawn() { # spawn NAME COMMAND... ; detached from our stdout so `$(ceph.sh start)` returns
    local name=$1; shift
    "$@" </dev/null >>"$state/log/$name.stdout" 2>&1 8>&- &
    echo $! >"$state/pid.$name"
}
until_ready() { # until_ready NAME CHECK...
    local name=$1; shift
    local give_up=$((SECONDS + wait_s))
    while ! "$@" >/dev/null 2>&1; do
        not_dead "$name" || { show_logs; fail "$name died while starting (logs in $state/log)"; }
        [ "$SECONDS" -lt "$give_up" ] || { show_logs; fail "$name not ready after ${wait_s}s"; }
        sleep 0.2
    done
}
show_logs() {
    local f
    for f in "$state"/log/*; do
        [ -s "$f" ] && { printf -- '--- %s (tail)\n' "$f" >&2; tail -n 20 "$f" >&2; }
    done
    return 0
}
halt() { # halt NAME: SIGTERM, up to 10 s of grace, then SIGKILL
    local pid i
    is_ours "$1" || return 0
    pid=$(cat "$state/pid.$1")
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true   # a test may have frozen it with SIGSTOP
    for ((i = 0; i < 200; i++)); do is_ours "$1" || return 0; sleep 0.05; done
    say "$1 (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do is_ours "$1" || return 0; sleep 0.05; done
}

# ---------------------------------------------------------------- checks
ceph_cli() { timeout 20 ceph --conf "$conf" --connect-timeout 10 "$@" 2>>"$state/log/cli.log"; }
mon_ready() { ceph_cli mon stat; }
osd_ready() { ceph_cli osd stat -f json | grep -q '"num_up_osds":1'; }
rgw_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$endpoint/")" = 200 ]; }
core_up() { [ -f "$tag" ] && is_ours mon && is_ours osd; }
running() { core_up && is_ours rgw; }
port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# signed S3 call with curl's SigV4 support; prints the HTTP status
s3_call() {
    local method=$1 path=$2
    curl -s -o "$state/log/s3.last" -w '%{http_code}' --max-time 20 -X "$method" \
        --aws-sigv4 "aws:amz:$region:s3" --user "$access_key:$secret_key" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$endpoint$path"
}

# ---------------------------------------------------------------- packages
install_packages() {
    local bin missing=()
    for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl ss flock; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    local pkgs=(ceph-mon ceph-osd radosgw ceph-common curl iproute2 util-linux)
    local root=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || fail "missing ${missing[*]}; run as root or: apt-get install ${pkgs[*]}"
        root=(sudo -n)
    fi
    local apt=("${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
    say "missing ${missing[*]}: installing ${pkgs[*]}"
    if ! "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >&2; then
        say "install failed; refreshing the package lists and trying again"
        "${apt[@]}" update >&2 || fail "apt-get update failed"
        "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >&2 || fail "apt-get install failed"
    fi
}

# ---------------------------------------------------------------- cluster
tls_wanted() { [ "$tls_port" != 0 ] && command -v openssl >/dev/null 2>&1; }
tls_frontend() {
    [ -f "$tls/rgw.crt" ] || return 0
    printf ' ssl_endpoint=127.0.0.1:%s ssl_certificate=%s ssl_private_key=%s' \
        "$tls_port" "$tls/rgw.crt" "$tls/rgw.key"
}

# A throwaway CA and a certificate for 127.0.0.1 signed by it: tests trust ca.pem only.
make_certificates() {
    tls_wanted || { say "no openssl (or ONAIR_CEPH_TLS_PORT=0): https endpoint skipped"; return 0; }
    mkdir -p "$tls"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -x509 "${ec[@]}" -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 7 \
            -subj "/CN=onair throwaway test CA" &&
        openssl req -new "${ec[@]}" -keyout "$tls/rgw.key" -out "$tls/rgw.csr" -subj "/CN=127.0.0.1" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext" &&
        openssl x509 -req -in "$tls/rgw.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
            -out "$tls/rgw.crt" -days 7 -extfile "$tls/ext"
    } >>"$state/log/openssl.log" 2>&1 || fail "openssl could not make the test certificates"
}

write_conf() {
    cat >"$conf" <<EOF
# Written by onair's scripts/ceph.sh: a disposable test cluster. Never put real data here.
[global]
fsid = $1
mon host = [v2:127.0.0.1:$mon_port]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
# No cephx at all; S3 signatures are still checked by radosgw.
auth cluster required = none
auth service required = none
auth client required = none
# radosgw asks for a "secure" mon session by default, which auth=none cannot give.
ms mon client mode = crc
ms client mode = crc
keyring = /dev/null
run dir = $state/run
admin socket = $state/run/\$name.asok
pid file = $state/run/\$name.pid
log file = $state/log/\$name.log
log to stderr = false
err to stderr = false
crash dir = $state/run
chdir = $state
mon data = $state/mon/\$id
osd data = $state/osd/\$id
rgw data = $state/rgw/\$id
mon cluster log file = $state/log/cluster.log
mon data avail warn = 1
mon data avail crit = 0
# One OSD: pools of size one, few placement groups, no autoscaler, map changes proposed at once.
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
paxos propose interval = 0.05
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd crush update on start = false
osd objectstore = memstore
memstore device bytes = $ram_bytes
osd op num shards = 2
osd op num threads per shard = 1

[client.rgw.onair]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port$(tls_frontend)
rgw thread pool size = 32
rgw enable usage log = false
EOF
}

boot() {
    local t0=$SECONDS fsid osd_uuid id
    mkdir -p "$state"/{mon,osd/0,rgw,run,log}
    touch "$tag"
    fsid=$(cat /proc/sys/kernel/random/uuid)
    make_certificates
    write_conf "$fsid"

    say "monitor on 127.0.0.1:$mon_port (state in $state)"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$state/monmap" >/dev/null
    ceph-mon --conf "$conf" -i a --mkfs --monmap "$state/monmap" >>"$state/log/mkfs.stdout" 2>&1 \
        || { show_logs; fail "ceph-mon --mkfs failed"; }
    spawn mon ceph-mon --conf "$conf" -i a -f
    until_ready mon mon_ready

    say "memstore OSD (${ram_bytes} bytes of RAM at most)"
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph_cli osd new "$osd_uuid") || fail "ceph osd new failed"
    [ "$id" = 0 ] || fail "expected osd id 0, got '$id'"
    ceph_cli osd crush add osd.0 1.0 root=default host=localhost >/dev/null || fail "crush add failed"
    timeout 60 ceph-osd --conf "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$state/log/mkfs.stdout" 2>&1 \
        || { show_logs; fail "ceph-osd --mkfs failed"; }
    spawn osd ceph-osd --conf "$conf" -i 0 -f
    until_ready osd osd_ready

    start_rgw
    say "daemons up in $((SECONDS - t0))s"
}

start_rgw() {
    say "radosgw on $endpoint"
    mkdir -p "$state/rgw/rgw.onair"
    spawn rgw radosgw --conf "$conf" -n client.rgw.onair -f
    until_ready rgw rgw_ready
}

ensure_user_and_bucket() {
    if ! radosgw-admin --conf "$conf" user info --uid "$s3_user" >/dev/null 2>>"$state/log/cli.log"; then
        radosgw-admin --conf "$conf" user create --uid "$s3_user" --display-name "onair tests" \
            --access-key "$access_key" --secret-key "$secret_key" >/dev/null 2>>"$state/log/cli.log" \
            || fail "radosgw-admin user create failed"
    fi
    # The user may take a moment to be visible to the gateway: retry the CreateBucket a while.
    local code give_up=$((SECONDS + 30))
    until code=$(s3_call PUT "/$bucket") && { [ "$code" = 200 ] || [ "$code" = 409 ]; }; do
        [ "$SECONDS" -lt "$give_up" ] || fail "cannot create bucket $bucket (HTTP $code): $(cat "$state/log/s3.last" 2>/dev/null)"
        sleep 0.3
    done
}

exports() {
    local line
    for line in \
        AWS_ENDPOINT_URL="$endpoint" \
        AWS_ACCESS_KEY_ID="$access_key" \
        AWS_SECRET_ACCESS_KEY="$secret_key" \
        AWS_REGION="$region" \
        AWS_DEFAULT_REGION="$region" \
        AWS_REQUEST_CHECKSUM_CALCULATION=when_required \
        AWS_RESPONSE_CHECKSUM_VALIDATION=when_required \
        AWS_EC2_METADATA_DISABLED=true \
        S3_BUCKET="$bucket" \
        ONAIR_CEPH_DIR="$state" \
        ONAIR_CEPH_RGW_PORT="$rgw_port" \
        ONAIR_CEPH_MON_PORT="$mon_port" \
        ONAIR_CEPH_RGW_PID="$(cat "$state/pid.rgw" 2>/dev/null)" \
        ONAIR_CEPH_HTTPS_ENDPOINT="$([ -f "$tls/rgw.crt" ] && echo "https://127.0.0.1:$tls_port")" \
        ONAIR_CEPH_CA_FILE="$([ -f "$tls/ca.pem" ] && echo "$tls/ca.pem")" \
        CEPH_CONF="$conf"; do
        printf 'export %s=%q\n' "${line%%=*}" "${line#*=}"
    done
}

take_lock() {
    mkdir -p "$(dirname "$state")"
    exec 8>>"$state.lock"
    flock -w 300 8 || fail "another ceph.sh holds $state.lock"
}

stop_cluster() {
    if [ ! -e "$state" ]; then say "not running ($state does not exist)"; return 0; fi
    [ -f "$tag" ] || fail "$state was not made by ceph.sh; leaving it alone"
    # Gateway first, monitor last: radosgw hangs in shutdown without its OSD, and an OSD that
    # cannot report to its monitor waits before exiting.
    halt rgw; halt osd; halt mon
    rm -rf "$state"
    say "stopped; removed $state"
}

# ---------------------------------------------------------------- commands
cmd_start() {
    local t0=$SECONDS
    install_packages
    take_lock
    if running; then
        say "already running in $state"
        until_ready rgw rgw_ready   # fails after ONAIR_CEPH_WAIT if the gateway is frozen
    elif core_up; then
        # Only the gateway is gone (a test killed it): start it again; the data is still there.
        port_busy "$rgw_port" && fail "127.0.0.1:$rgw_port is taken by another process"
        start_rgw
    else
        if [ -e "$state" ]; then
            [ -f "$tag" ] || [ -z "$(ls -A "$state")" ] || fail "$state exists and was not made by ceph.sh"
            say "clearing a stale cluster in $state"
            stop_cluster
        fi
        local p ports=("$rgw_port" "$mon_port")
        tls_wanted && ports+=("$tls_port")
        for p in "${ports[@]}"; do
            port_busy "$p" && fail "127.0.0.1:$p is taken (another cluster? set ONAIR_CEPH_*_PORT)"
        done
        # A failure from here on leaves no half-started daemons behind (the logs are kept).
        trap 'rc=$?; if [ $rc != 0 ]; then halt rgw; halt osd; halt mon; say "start failed; logs kept in $state/log"; fi' EXIT
        boot
    fi
    ensure_user_and_bucket
    trap - EXIT
    exports | tee "$state/env.sh"
    say "ready in $((SECONDS - t0))s: $endpoint, bucket $bucket (also: . $state/env.sh)"
}

case ${1:-} in
    start) cmd_start ;;
    stop) take_lock; stop_cluster ;;
    env) running || fail "no cluster running in $state (run: bash scripts/ceph.sh start)"; exports ;;
    status)
        if running && rgw_ready; then echo "running: $endpoint ($state)"
        elif running; then echo "running but the gateway does not answer: $endpoint ($state)"; exit 1
        else echo "not running ($state)"; exit 1; fi ;;
    *) echo "usage: bash scripts/ceph.sh start|stop|env|status" >&2; exit 2 ;;
esac
