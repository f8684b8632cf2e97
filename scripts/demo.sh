#!/usr/bin/env bash
# The main job, as far as it exists: build sglangd and sglangctl, start the
# daemon on a temporary data directory and socket, drive it with sglangctl
# (version, doctor), then stop it with SIGTERM and check it exits cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory build
work=$(mktemp -d /tmp/sglangd-demo.XXXXXX)
sock="$work/sglangd.sock"
log="$work/sglangd.log"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

# Without an NVIDIA driver, run the simulator path (gpu.mode none) so the
# doctor passes; on a GPU host the demo uses the real GPUs.
if [ -z "${SGLANGD_GPU_MODE:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1'; then
  export SGLANGD_GPU_MODE=none
  echo "== no NVIDIA driver here: gpu.mode none (sessions run without GPUs)"
fi
echo "== starting sglangd (data $work/data, socket $sock, log $log)"
SGLANGD_CONFIG= bin/sglangd --data-dir "$work/data" --socket "$sock" --log-level info >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ -S "$sock" ] && bin/sglangctl --host "unix://$sock" version >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "sglangd exited:"; cat "$log"; exit 1; }
  sleep 0.1
done

export SGLANGD_HOST="unix://$sock"
echo "== sglangctl version"
bin/sglangctl version
echo "== sglangctl doctor"
bin/sglangctl doctor
echo "== sglangctl gpu list"
bin/sglangctl gpu list
echo "== sglangctl doctor -o json (first lines)"
bin/sglangctl doctor -o json | sed -n 1,12p

echo "== stopping sglangd (SIGTERM)"
kill -TERM "$pid"
wait "$pid"; rc=$?; pid=
echo "sglangd exited with status $rc"
tail -n 3 "$log"
echo "== demo finished; files in $work"
