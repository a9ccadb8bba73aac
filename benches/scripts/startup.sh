#!/bin/bash
# Time from start to the `listening` line of `dialgate serve`, the CPU the
# process used by then (user, kernel), and the contact index's scan and
# build times.   usage: startup.sh BINARY   (in the directory of dialgate.toml)
set -eu
bin=$1; log=$(mktemp)
start=$(date +%s.%N)
DIALGATE_LOG=info,dialgate::contacts=debug NO_COLOR=1 "$bin" --config dialgate.toml serve > "$log" 2>&1 &
pid=$!
until grep -q listening "$log"; do
  sleep 0.05
  kill -0 "$pid" 2>/dev/null || { echo "exited:"; tail -5 "$log"; exit 1; }
done
end=$(date +%s.%N)
read -r user sys < <(awk '{print $14/100, $15/100}' "/proc/$pid/stat")
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "$(basename "$bin"): $(echo "$end - $start" | bc) s, user $user s, kernel $sys s | $(grep -o 'scan_ms=[0-9]* index_ms=[0-9]*' "$log")"
rm -f "$log"
