#!/bin/bash
# A/B of first loads: each binary imports FILE into an empty data directory,
# alternating, PAIRS times, the first binary first in each pair.
#   usage: [KIND=suppression] ab_import.sh FILE PAIRS BINARY...
# (KIND: consent, the default, or suppression for opt-out files.)
# Run it in a directory holding a dialgate.toml whose data_dir is "data"
# (the README's quick-start configuration will do); it removes ./data.
# Prints wall time, peak memory and the load's phases for each run.
set -eu
file=$1; pairs=$2; shift 2
kind=${KIND:-consent}
for i in $(seq 1 "$pairs"); do
  for bin in "$@"; do
    rm -rf data
    out=$(DIALGATE_LOG=dialgate::contacts=debug NO_COLOR=1 /usr/bin/time -f "time %e s peak %M KB" \
      "$bin" --config dialgate.toml "$kind" import --file "$file" --offline 2>&1)
    echo "$(basename "$bin") $i: $(grep -o 'time .*' <<<"$out") | $(grep -o 'ids_sorted.*took_ms=[0-9]*\|inserted_ms.*took_ms=[0-9]*' <<<"$out" | head -1) | $(grep 'lines valid' <<<"$out")"
  done
done
rm -rf data
