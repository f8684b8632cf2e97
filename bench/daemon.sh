#!/usr/bin/env bash
# Foundation figures: binary sizes, cold start to ready, idle RSS.
# Cold start is measured to the first successful /readyz over the socket
# (the daemon sends READY=1 to systemd at the same moment), over 5 starts on
# a fresh data directory each (migrations included).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-28s %s\n' "bin/sglangd size" "$(stat -c %s bin/sglangd | numfmt --to=iec-i --suffix=B)"
printf '%-28s %s\n' "bin/sglangctl size" "$(stat -c %s bin/sglangctl | numfmt --to=iec-i --suffix=B)"

ready_ms=()
for i in 1 2 3 4 5; do
  sock="$work/s$i.sock"
  t0=$(date +%s%N)
  SGLANGD_CONFIG= SGLANGD_GPU_MODE=${SGLANGD_GPU_MODE:-none} HF_ENDPOINT=http://127.0.0.1:9 bin/sglangd --data-dir "$work/d$i" --socket "$sock" --log-level error 2>/dev/null &
  pid=$!
  until curl -sf --unix-socket "$sock" http://x/readyz >/dev/null 2>&1; do sleep 0.002; done
  t1=$(date +%s%N)
  ready_ms+=("$(( (t1 - t0) / 1000000 ))")
  if [ "$i" = 5 ]; then
    sleep 3
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  fi
  kill -TERM $pid; wait $pid
done
printf '%-28s %s ms (runs: %s)\n' "cold start to ready (min)" "$(printf '%s\n' "${ready_ms[@]}" | sort -n | head -1)" "${ready_ms[*]}"
printf '%-28s %s KiB\n' "idle RSS after 3 s" "$rss"
