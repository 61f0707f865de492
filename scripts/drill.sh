#!/usr/bin/env bash
# scripts/drill.sh — the disaster-recovery drills (tests/drills): the radio under storage faults,
# against two throwaway Ceph clusters on 127.0.0.1 (the primary site on port 7480, a backup site
# on 7481), each drill with a listener whose capture is decoded and judged. Prints a table:
# drill, seconds of dead air, seconds until storage was seen again, where tracks came from.
#
#   bash scripts/drill.sh              # every drill (about 15 minutes)
#   bash scripts/drill.sh freeze       # the drills whose test name contains "freeze"
#
# Starts the clusters with scripts/ceph.sh unless they run already, and stops the ones it started.
# Needs ffmpeg (installed with apt when missing) and root or sudo for the Ceph packages.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v ffmpeg >/dev/null; then
    echo "==> installing ffmpeg" >&2
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ffmpeg >&2
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/onair/target}
export CARGO_TERM_COLOR=never

# The backup site: a second cluster with its own state dir, ports, bucket and keys (all set
# here: the primary's ONAIR_CEPH_* may be in the environment already).
backup_site=(ONAIR_CEPH_DIR="${TMPDIR:-/tmp}/onair-ceph-$(id -u)-7481"
    ONAIR_CEPH_RGW_PORT=7481 ONAIR_CEPH_MON_PORT=3301 ONAIR_CEPH_TLS_PORT=0
    ONAIR_CEPH_BUCKET=radio-backup ONAIR_CEPH_ACCESS_KEY=onair-backup
    ONAIR_CEPH_SECRET_KEY=onair-backup-secret-key-9876543210)
stop=()
bash scripts/ceph.sh status >/dev/null 2>&1 || stop+=(primary)
env "${backup_site[@]}" bash scripts/ceph.sh status >/dev/null 2>&1 || stop+=(backup)
cleanup() {
    local site
    for site in "${stop[@]}"; do
        if [ "$site" = primary ]; then bash scripts/ceph.sh stop >&2 || true
        else env "${backup_site[@]}" bash scripts/ceph.sh stop >&2 || true; fi
    done
}
trap cleanup EXIT

echo "==> Ceph: primary site" >&2
primary_env=$(bash scripts/ceph.sh start)
eval "$primary_env"
echo "==> Ceph: backup site" >&2
backup_env=$(env "${backup_site[@]}" bash scripts/ceph.sh start)
backup_dir=$(printf '%s\n' "$backup_env" | sed -n 's/^export ONAIR_CEPH_DIR=//p')
export ONAIR_BACKUP_AWS_ENDPOINT_URL=http://127.0.0.1:7481
export ONAIR_BACKUP_AWS_ACCESS_KEY_ID=onair-backup
export ONAIR_BACKUP_AWS_SECRET_ACCESS_KEY=onair-backup-secret-key-9876543210
export ONAIR_BACKUP_BUCKET=radio-backup
export ONAIR_BACKUP_CEPH_DIR=$backup_dir
export ONAIR_BACKUP_CEPH_RGW_PORT=7481
export ONAIR_BACKUP_CEPH_MON_PORT=3301

report=$(mktemp)
export ONAIR_DRILL_REPORT=$report
echo "==> drills" >&2
status=0
# Two at a time: the memory drill makes its long tracks while a gateway drill runs; drills that
# touch a gateway take turns inside the binary.
cargo test --locked --test drills -- --test-threads=2 ${1:+"$1"} || status=$?

# The table, columns padded to their widest cell.
{
    printf 'drill\tdead air (s)\tstorage seen again after (s)\ttracks from\n'
    cat "$report"
} | awk -F'\t' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
                   if (NF > n) n = NF; rows = NR }
    END { for (r = 1; r <= rows; r++) { line = ""
            for (i = 1; i <= n; i++) line = line sprintf("%-" w[i] + 2 "s", cell[r, i])
            print line } }' >&2
rm -f "$report"
exit "$status"
