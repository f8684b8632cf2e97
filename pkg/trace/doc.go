// Package trace is sglangd's engine for PyTorch-profiler (Kineto) Chrome
// traces as SGLang writes them, one file per rank. It is a leaf: it reads
// files and readers and returns structs, with no network and no logging.
//
//   - Reader streams the events of a .json or .json.gz trace without holding
//     the event list: a hand-written tokenizer parses ts/dur as decimal text
//     into int64 nanoseconds, ids as uint64 and pid/tid as number or string,
//     and reports truncated or corrupt input as a *SyntaxError with the byte
//     offset (errors.Is ErrTruncated / errdefs.ErrInvalidArgument).
//   - Discover finds SGLang's per-rank files in a directory (prefix, profile
//     id, TP/DP/PP/EP ranks, EXTEND/DECODE stage files) in rank order.
//   - MergeDir / MergeFiles / Merge stream the ranks into one
//     Perfetto-loadable trace: pids labelled "[TP00-DP00] <pid>" as SGLang's
//     merger does, process sort indexes rank-major, timestamps moved onto the
//     earliest baseTimeNanoseconds, flow ids namespaced per rank; memory stays
//     bounded by one event plus the compression buffers. A .gz output is
//     written in parallel, one worker per rank compressing its section to a
//     spool, joined into a single standard gzip member (merge_gzip.go).
//   - AnalyzePath / AnalyzeFiles produce a Summary (JSON-stable, see
//     SummaryVersion): GPU busy time per device as an interval union, kernel
//     families and top kernels, the per-step table joined through CUPTI
//     correlation ids (CUDA-graph launches included), prefill/decode figures,
//     bubbles and the CPU work in them, launch-bound and CUDA-graph figures,
//     communication share and waits, cross-rank imbalance and stragglers, and
//     profiler-distortion warnings. Summary.WriteText renders it for people;
//     package report renders it as a self-contained HTML page.
//   - Diff compares two summaries with noise thresholds and returns
//     regression/improvement verdicts per step mode, kernel family and kernel.
package trace
