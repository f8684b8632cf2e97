#!/usr/bin/env bash
# The main job, as far as it exists: build sglangd and sglangctl, start the
# daemon on a temporary data directory and socket, drive it with sglangctl
# (version, doctor, gpu list, image pull), then run the manual recipe's
# profiling steps against the bundled SGLang simulator image (container,
# /start_profile, five /v1/completions, /stop_profile) and hand the traces
# to sglangd's trace engine (merge, analyze, HTML report). Finally stop the
# daemon with SIGTERM and check it exits cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory build
work=$(mktemp -d /tmp/sglangd-demo.XXXXXX)
sock="$work/sglangd.sock"
log="$work/sglangd.log"
container=sglangd-demo-$$
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
}
trap cleanup EXIT

# Without an NVIDIA driver, run the simulator path (gpu.mode none) so the
# doctor passes; on a GPU host the demo uses the real GPUs.
if [ -z "${SGLANGD_GPU_MODE:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1'; then
  export SGLANGD_GPU_MODE=none
  echo "== no NVIDIA driver here: gpu.mode none (sessions run without GPUs)"
fi
echo "== starting sglangd (data $work/data, socket $sock, log $log)"
image=${SIM_IMAGE:-sglangd/sglang-sim:dev}
echo "== building the SGLang simulator image $image (no registry, no base image)"
make --no-print-directory sim-image SIM_IMAGE="$image" >/dev/null
# The daemon's configured image is the simulator's, pulled only if missing.
export SGLANGD_CONFIG="$work/sglangd.yaml"
printf 'docker:\n  image: %s\n  pull_policy: if-missing\n' "$image" > "$SGLANGD_CONFIG"
# The demo downloads no model; the doctor probes the endpoint, so point it at
# a mirror you can reach (HF_ENDPOINT) or it stays on loopback here.
export HF_ENDPOINT=${HF_ENDPOINT:-http://127.0.0.1:9}
bin/sglangd --data-dir "$work/data" --socket "$sock" --log-level info >"$log" 2>&1 &
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
echo "== sglangctl image pull (if-missing: the local simulator image is used as is)"
bin/sglangctl image pull --policy if-missing --plain

echo "== docker run the simulator as the recipe runs SGLang (TP=2)"
mkdir -p "$work/traces"
docker run -d --name "$container" -p 127.0.0.1::30000 --ipc=host --ulimit stack=67108864 \
  -v "$work/traces:/traces" -e SGLANG_TORCH_PROFILER_DIR=/traces -e SGLANG_SIM_LOAD_TIME=1s \
  "$image" python3 -m sglang.launch_server --model-path Qwen/Qwen2.5-7B-Instruct \
  --host 0.0.0.0 --port 30000 --tp-size 2 >/dev/null
url="http://$(docker port "$container" 30000/tcp | head -n 1)"
for _ in $(seq 1 300); do
  curl -sf "$url/health" >/dev/null && break
  sleep 0.1
done
curl -sf "$url/health" >/dev/null || { docker logs "$container" | tail -n 20; exit 1; }
echo "server ready at $url"
echo "== POST /start_profile, 5 x /v1/completions, POST /stop_profile"
curl -sf -X POST "$url/start_profile"
reqs=()
for i in 1 2 3 4 5; do
  curl -sf "$url/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"Qwen/Qwen2.5-7B-Instruct","prompt":"Say hello","max_tokens":30,"temperature":0.1}' >/dev/null &
  reqs+=($!)
done
wait "${reqs[@]}"
curl -sf -X POST "$url/stop_profile"
docker logs "$container" 2>&1 | grep -E "Profiling (starts|done)" | tail -n 2
ls -la "$work/traces"

echo "== sglangctl trace merge / analyze (no daemon needed)"
bin/sglangctl trace merge "$work/traces" -o "$work/merged.trace.json.gz"
bin/sglangctl trace analyze "$work/traces" --html "$work/report.html" --summary "$work/summary.json" | sed -n 1,40p
echo "report: $work/report.html  summary: $work/summary.json  merged trace (open in Perfetto): $work/merged.trace.json.gz"
docker rm -f "$container" >/dev/null

echo "== stopping sglangd (SIGTERM)"
kill -TERM "$pid"
wait "$pid"; rc=$?; pid=
echo "sglangd exited with status $rc"
tail -n 3 "$log"
echo "== demo finished; files in $work"
