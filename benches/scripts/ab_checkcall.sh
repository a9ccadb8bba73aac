#!/bin/bash
# A/B of CheckCall at concurrency 16 against the durable echo of the same
# run: each binary in turn is copied to target/release/dialgate (the
# server the checkcall bench starts), alternating, PAIRS times, the first
# binary first in each pair; one line per run with dialgate's and the
# durable echo's requests/s, their ratio, the p99 and p999 ratios and the
# CPU per request of both.
#   usage: ab_checkcall.sh PAIRS BINARY...
# Build the bench first (`cargo bench --bench checkcall --no-run`); the
# last binary named is left in target/release/dialgate.
set -eu
cd "$(dirname "$0")/../.."
bench=$(ls -t target/release/deps/checkcall-* | grep -v '\.d$' | head -1)
pairs=$1; shift
for i in $(seq 1 "$pairs"); do
  for bin in "$@"; do
    cp "$bin" target/release/dialgate
    out=$(BENCH_SECONDS=${BENCH_SECONDS:-5} BENCH_SCREEN=0 BENCH_HTTP=0 BENCH_POSTGRES=0 BENCH_CONCURRENCY=16 "$bench" --bench 2>&1)
    awk -v name="$(basename "$bin")" '
      $1 == "echo+fsync" { fs = $3; fs99 = $5; fs999 = $6; fscpu = $9 }
      $1 == "dialgate" && $2 == 16 { dg = $3; dg99 = $5; dg999 = $6; dgcpu = $9 }
      END { printf "%-10s dialgate %6d durable echo %6d ratio %.3f p99 %.2f p999 %.2f cpu %s vs %s us/req\n",
                   name, dg, fs, dg / fs, dg99 / fs99, dg999 / fs999, dgcpu, fscpu }' <<<"$out"
  done
done
