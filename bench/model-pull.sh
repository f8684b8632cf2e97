#!/usr/bin/env bash
# Benchmark `sglangctl model pull` against curl on the same bytes, served
# from a generated multi-GB repo on the loopback Hub (internal/hubtest).
# Prints a table: throughput, the ratio to curl (target >= 0.9) and the
# daemon's peak RSS.
#
# Usage: bench/model-pull.sh [-size GiB] [-files N] [-runs N] [-dir DIR] [-part-size 128MiB] [-connections-per-file 8]
# The work directory must be on the disk you want to measure (default a
# temp dir under $TMPDIR); it needs twice the repo size free.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/sglangd ./cmd/sglangctl
go run ./bench/modelpull -bin "$bin" "$@"
