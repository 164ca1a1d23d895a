#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 30) each, starting from the
# seeds in fuzz/seeds/<target>/. Exits non-zero if any target crashes, panics, leaks, times out
# on one input or runs out of memory.
#
# The seeds are copied into a scratch corpus directory, so the repository is not modified
# (crash reproducers go to fuzz/artifacts/<target>/, which is git-ignored).
#
# Works on stable Rust: cargo-fuzz needs nightly-only -Z flags (sanitizer, coverage passes),
# which RUSTC_BOOTSTRAP=1 unlocks; the AddressSanitizer runtime ships with stable rust-std on
# x86_64-unknown-linux-gnu.
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated subset of targets (default: all, from `cargo fuzz list`)
#   FUZZ_WORKDIR   scratch directory for corpora and logs (default: a fresh temporary one,
#                  removed at exit; a given one is kept)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 10)
set -euo pipefail

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

seconds=${FUZZ_SECONDS:-30}
timeout=${FUZZ_TIMEOUT:-10}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [[ -n ${FUZZ_WORKDIR:-} ]]; then
    work=$FUZZ_WORKDIR
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/brski-fuzz.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi

# The fuzz workspace has its own lock file; `cargo fuzz build` would quietly rewrite a stale one
# (a new dependency of `shared`), leaving the checkout dirty. Refuse instead, with the fix.
echo "== checking fuzz/Cargo.lock is current"
if ! (cd fuzz && cargo metadata --locked --format-version 1 >/dev/null); then
    echo "!! fuzz/Cargo.lock is stale; refresh it with:" \
        "(cd fuzz && cargo metadata --format-version 1 >/dev/null), and commit it"
    exit 1
fi

echo "== building fuzz targets"
cargo fuzz build

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
failed=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    log="$work/$target.log"
    mkdir -p "$corpus"
    if [[ -d fuzz/seeds/$target ]]; then
        cp -R "fuzz/seeds/$target/." "$corpus/"
    fi
    echo "== fuzzing $target for ${seconds}s ($(find "$corpus" -type f | wc -l) seeds)"
    if cargo fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" | tr '\n' ' '
        echo
    else
        echo "!! $target FAILED; last lines of $log:"
        tail -n 60 "$log"
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "== crashes in: ${failed[*]} (reproducers in fuzz/artifacts/<target>/;" \
        "rerun with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>)"
    exit 1
fi
echo "== all ${#targets[@]} fuzz targets ran ${seconds}s each without a crash"
