// Package sglangsim is a stand-in for an SGLang server (sgl-project/sglang
// launch_server) used by sglangd's tests and demo, since development and CI
// machines have no GPU, no nvcr.io access and no model weights.
//
// It serves SGLang's HTTP surface with the real paths, methods, status codes
// and bodies (see ../shared/notes/sglang-api.md), advances a per-replica
// batch ("forward") counter as requests run, drives the torch profiler state
// machine of scheduler_profiler_mixin.py (start_step, num_steps auto-stop,
// profile_by_stage, 500 on double start or idle stop) and writes one Kineto
// trace per rank, gzip-compressed in place the way torch exports them, named
// exactly as SGLang names them, with content generated from the batches that
// actually ran. It prints SGLang's log lines with their
// "[YYYY-MM-DD HH:MM:SS DPd PPp TPt]" prefixes.
//
// Faults (failed model load or warm-up, slow warm-up, slow export, crash at
// a step and its exit status, ignored SIGTERM, hanging stop, corrupt or
// missing rank files, slow responses) are set through SimOptions, the
// command line (--sim-*) or SGLANG_SIM_* environment variables.
//
// Start runs a simulator in-process; Main is the command-line entry point
// used by cmd/sglang-sim and, through a python3 entry, by the container image
// built in package simimage.
package sglangsim
