#!/bin/sh
# Write latency with 16 marrow processes on one study database (issue 7, item 1):
# runs tests/concurrency.rs, which starts 16 study users (readers, adjudicators,
# screening coordinators, CSV and DICOM importers) running the binary over and over
# for MARROW_CONCURRENCY_SECS seconds (default 30), checks that no acknowledged write
# was lost and nobody saw "busy", and prints p50/p99 of the write latency as the
# client sees it (one whole run of the binary per write), overall and per kind.
#
# Usage: bench/concurrency.sh [--release] [SECONDS] [SEED]
#   --release  time the release build (the default is the test profile, opt-level 1)
#   SEED       repeats the workers' choices of an earlier run (its seed is printed)
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/marrow-target}"
profile=""
if [ "${1:-}" = "--release" ]; then
    profile="--release"
    shift
fi
export MARROW_CONCURRENCY_SECS="${1:-30}"
if [ -n "${2:-}" ]; then
    export MARROW_CONCURRENCY_SEED="$2"
fi
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
cargo test $profile --test concurrency -- --nocapture 2>&1 | grep -E '^concurrency:|^test result'
