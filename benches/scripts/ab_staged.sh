#!/bin/bash
# A/B of staged imports: each binary imports SEED (one consent) into an
# empty data directory, then FILE beside it (so the records are staged and
# moved in, as into a store in service), alternating, PAIRS times, the
# first binary first in each pair.
#   usage: [KIND=suppression] ab_staged.sh SEED FILE PAIRS BINARY...
# (KIND: suppression, the default, or consent.)
# Run it in a directory holding a dialgate.toml whose data_dir is "data";
# it removes ./data. Prints wall time, peak memory, the staging and moving
# phases and the import's summary line for each run.
set -eu
seed=$1; file=$2; pairs=$3; shift 3
kind=${KIND:-suppression}
for i in $(seq 1 "$pairs"); do
  for bin in "$@"; do
    rm -rf data
    "$bin" --config dialgate.toml consent import --file "$seed" >/dev/null 2>&1
    out=$(DIALGATE_LOG=dialgate::contacts=debug NO_COLOR=1 /usr/bin/time -f "time %e s peak %M KB" \
      "$bin" --config dialgate.toml "$kind" import --file "$file" 2>&1)
    echo "$(basename "$bin") $i: $(grep -o 'time .*' <<<"$out") | $(grep -o 'import staged took_ms=[0-9]*' <<<"$out") $(grep -o 'import moved in took_ms=[0-9]*' <<<"$out") | $(grep 'lines valid' <<<"$out")"
  done
done
rm -rf data
