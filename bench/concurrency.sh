#!/bin/sh
# Write latency with 16 marrow processes on one study database (issue 7, item 1):
# runs tests/concurrency.rs, which starts 16 users (readers, adjudicators, screening
# coordinators, CSV and DICOM importers) running the binary over and over for
# MARROW_CONCURRENCY_SECS seconds (default 30), checks that no acknowledged write was
# lost and nobody saw "busy", and prints p50/p99 of the write latency as the client
# sees it (one whole run of the binary per write), overall and per kind.
#
# As root the 16 users are 16 real OS accounts in the Unix group the study is shared
# with (`marrow init --group`), each process opening the study as itself; otherwise, or
# with --as, the admin acting as 16 study users (`--as`). The line `concurrency: mode:`
# says which.
#
# Usage: bench/concurrency.sh [--release] [--as] [SECONDS] [SEED]
#   --release  time the release build (the default is the test profile, opt-level 1)
#   --as       the admin acting as the 16 users even as root (MARROW_CONCURRENCY_LAUNCH=as)
#   SEED       repeats the workers' choices of an earlier run (its seed is printed)
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/marrow-target}"
profile=""
if [ "${1:-}" = "--release" ]; then
    profile="--release"
    shift
fi
if [ "${1:-}" = "--as" ]; then
    export MARROW_CONCURRENCY_LAUNCH=as
    shift
fi
export MARROW_CONCURRENCY_SECS="${1:-30}"
if [ -n "${2:-}" ]; then
    export MARROW_CONCURRENCY_SEED="$2"
fi
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
cargo test $profile --test concurrency -- --nocapture 2>&1 | grep -E '^concurrency:|^test result|failed runs:|^stderr: error'
