#!/usr/bin/env bash
# Fuzzes onair with cargo-fuzz: builds the targets in fuzz/ and runs each one (all by default)
# for SECONDS from its seed corpus in fuzz/corpus/<target>/. Installs cargo-fuzz if it is
# missing. The stable toolchain is enough: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly
# flags. Exits non-zero when a target crashes, panics, times out or runs out of memory, and says
# where the input that did it is.
#
#   bash scripts/fuzz.sh SECONDS [TARGET...]      e.g. bash scripts/fuzz.sh 20, or 900 decode
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift

export RUSTC_BOOTSTRAP=1
# Outside the clone, apart from the main build (other flags, other profile).
export CARGO_TARGET_DIR=${ONAIR_FUZZ_TARGET_DIR:-$HOME/.cache/onair/fuzz-target}
export CARGO_TERM_COLOR=never

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked >&2

if [ $# -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
else
    targets=("$@")
fi

echo "==> cargo fuzz build" >&2
cargo fuzz build >&2

# New corpus entries go to a scratch folder, so a run leaves the committed corpus as it was;
# `cargo fuzz cmin TARGET` is how the corpus is curated. Crashes go to fuzz/artifacts/TARGET/.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${seconds}s" >&2
    mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
    log="$scratch/$target.log"
    # -timeout: one input taking longer is a finding (a hang); -rss_limit_mb: so is using more.
    if cargo fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" | sed "s/^/$target /" >&2 || true
    else
        tail -n 60 "$log" >&2
        input=$(grep -oE 'Test unit written to \S+' "$log" | tail -n1 | cut -d' ' -f5 || true)
        echo "error: fuzz target $target failed; input: ${input:-see the log above}" >&2
        [ -n "$input" ] && echo "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $target $input" >&2
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "error: fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
echo "==> fuzzing: ${#targets[@]} target(s), ${seconds}s each, nothing found" >&2
