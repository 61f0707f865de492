# scripts/release-binary.sh — sourced by check-deploy.sh and container-smoke.sh: sets `bin` to
# onair's release binary, building it (`cargo build --release --locked`) when it is missing or
# older than the sources. ONAIR_BIN names a binary to use as is. Needs the caller's `say`, `fail`,
# `WORK` and CARGO_TARGET_DIR.
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
