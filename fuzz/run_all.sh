#!/bin/bash
# Runs every marrow fuzz target for SECS seconds (default 600), one after another,
# from the binaries `cargo +nightly fuzz build --fuzz-dir .` made in this folder (no
# rebuild between runs). Each starts from a copy of its seed corpus and regressions
# under $WORK (default /tmp/marrow-fuzz), so the corpora it grows stay out of the
# repository; crashes go to $WORK/artifacts/<target>/, a summary to $WORK/summary.log.
#   cd fuzz && cargo +nightly fuzz build --fuzz-dir . && ./run_all.sh
#   TARGETS="dicom" SECS=60 ./run_all.sh
set -u
cd "$(dirname "$0")"
WORK=${WORK:-/tmp/marrow-fuzz}
B=target/x86_64-unknown-linux-gnu/release
for t in ${TARGETS:-dicom csv_patients csv_dxa csv_labs csv_followup}; do
  rm -rf "$WORK/corpus/$t"; mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
  cp corpus/$t/* "$WORK/corpus/$t/"
  cp regressions/$t/* "$WORK/corpus/$t/" 2>/dev/null
  echo "=== $t start $(date -u +%H:%M:%S)" >> "$WORK/summary.log"
  nice -n 5 "$B/$t" "$WORK/corpus/$t" \
    -max_total_time="${SECS:-600}" -rss_limit_mb=2048 -timeout=20 \
    -artifact_prefix="$WORK/artifacts/$t/" -print_final_stats=1 > "$WORK/$t.log" 2>&1
  echo "=== $t exit $? $(date -u +%H:%M:%S)" >> "$WORK/summary.log"
  grep -E "^stat::|Done|SUMMARY|ERROR" "$WORK/$t.log" | head -20 >> "$WORK/summary.log"
done
cat "$WORK/summary.log"
