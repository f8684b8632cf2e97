// Package api holds the wire types of sglangd's REST API and the Go client
// that sglangctl (and anyone else) uses to talk to the daemon.
//
// The daemon serves the API under /v1 on a unix socket (default
// /run/sglangd/sglangd.sock) and optionally on TCP with a bearer token.
// Requests and responses are JSON; long operations stream NDJSON, one event
// per line, where a failure is the last line, shaped like every other error:
//
//	{"error":{"code":"not_found","message":"...","hint":"..."}}
//
// This package depends on the standard library and containerd/errdefs only,
// so the CLI stays free of the daemon's dependencies (Docker, NVML, SQLite).
package api

import "time"

// Version is the API version prefix served by this package's types.
const Version = "v1"

// DefaultSocket is where the daemon listens unless configured otherwise.
const DefaultSocket = "/run/sglangd/sglangd.sock"

// DefaultHost is the client's default daemon address.
const DefaultHost = "unix://" + DefaultSocket

// VersionHeader carries the daemon's version on every response, so clients
// can warn about a mismatch without an extra call.
const VersionHeader = "Sglangd-Version"

// BuildInfo describes one binary: the daemon or the client.
type BuildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// VersionResponse is the body of GET /v1/version.
type VersionResponse struct {
	Daemon     BuildInfo `json:"daemon"`
	APIVersion string    `json:"api_version"`
	// DaemonID is created once per data directory and survives restarts.
	DaemonID  string    `json:"daemon_id"`
	StartedAt time.Time `json:"started_at"`
	// Starts counts daemon starts recorded in this data directory.
	Starts  int64  `json:"starts"`
	DataDir string `json:"data_dir"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	// Status is "ok" for /healthz; "ready" or "starting" for /readyz.
	Status string `json:"status"`
}

// CheckStatus is the verdict of one doctor check.
type CheckStatus string

// Doctor check verdicts, from best to worst.
const (
	CheckOK   CheckStatus = "ok"
	CheckSkip CheckStatus = "skip"
	CheckWarn CheckStatus = "warn"
	CheckFail CheckStatus = "fail"
)

// Check is one line of a doctor report.
type Check struct {
	Name    string      `json:"name"`
	Status  CheckStatus `json:"status"`
	Message string      `json:"message"`
	// Hint says what to do about a warn or fail.
	Hint string `json:"hint,omitempty"`
	// Details carries machine-readable facts (versions, paths, sizes).
	Details map[string]string `json:"details,omitempty"`
}

// DoctorReport is the body of GET /v1/doctor.
type DoctorReport struct {
	// OK is false when any check failed; warnings keep it true.
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}
