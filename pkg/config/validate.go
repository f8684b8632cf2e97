package config

import (
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks every field and returns one error per bad field, each
// naming its path and what was expected. An empty result means valid.
func (c *Config) Validate() Errors {
	var e Errors
	if c.Version != CurrentVersion {
		e.Add("version", 0, "unsupported config version %d; this sglangd understands %d", c.Version, CurrentVersion)
	}
	absPath(&e, "data_dir", c.DataDir, true)
	oneOf(&e, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&e, "log.format", c.Log.Format, "auto", "json", "console")

	absPath(&e, "api.socket", c.API.Socket, true)
	if m, err := strconv.ParseUint(c.API.SocketMode, 8, 32); err != nil || m > 0o777 {
		e.Add("api.socket_mode", 0, "must be octal permission bits such as \"0660\", got %q", c.API.SocketMode)
	} else if m&0o600 != 0o600 {
		e.Add("api.socket_mode", 0, "must give the owner read and write (0600 at least), got %q", c.API.SocketMode)
	}
	if l := c.API.TCP.Listen; l != "" {
		hostPort(&e, "api.tcp.listen", l)
		if c.Secrets.APIToken == "" {
			e.Add("api.tcp.token_file", 0, "required when api.tcp.listen is set (or set SGLANGD_API_TOKEN): TCP access always needs a bearer token")
		} else if len(c.Secrets.APIToken) < 16 {
			e.Add("api.tcp.token_file", 0, "token must be at least 16 characters, got %d", len(c.Secrets.APIToken))
		}
	}
	if (c.API.TCP.TLSCert == "") != (c.API.TCP.TLSKey == "") {
		e.Add("api.tcp.tls_cert", 0, "tls_cert and tls_key must be set together")
	}
	absPath(&e, "api.tcp.tls_cert", c.API.TCP.TLSCert, false)
	absPath(&e, "api.tcp.tls_key", c.API.TCP.TLSKey, false)
	minDuration(&e, "api.shutdown_timeout", c.API.ShutdownTimeout, time.Second)

	oneOf(&e, "gpu.mode", c.GPU.Mode, "nvml", "none")
	if !dottedVersion.MatchString(c.GPU.MinDriver) {
		e.Add("gpu.min_driver", 0, "must be a dotted driver version such as \"570\" or \"580.65.06\", got %q", c.GPU.MinDriver)
	}
	absPath(&e, "gpu.library_path", c.GPU.LibraryPath, false)
	minDuration(&e, "gpu.telemetry_interval", c.GPU.TelemetryInterval, 100*time.Millisecond)

	if u, err := url.Parse(c.Model.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		e.Add("model.endpoint", 0, "must be an http(s) URL such as https://huggingface.co or https://hf-mirror.com, got %q", c.Model.Endpoint)
	}
	absPath(&e, "model.cache_dir", c.Model.CacheDir, false)
	globs(&e, "model.include", c.Model.Include)
	globs(&e, "model.exclude", c.Model.Exclude)
	if c.Model.PartSize < 1<<20 {
		e.Add("model.part_size", 0, "must be at least 1MiB, got %s", c.Model.PartSize)
	}
	intRange(&e, "model.connections_per_file", c.Model.ConnectionsPerFile, 1, 64)
	intRange(&e, "model.concurrent_files", c.Model.ConcurrentFiles, 1, 64)
	intRange(&e, "model.max_connections", c.Model.MaxConnections, 1, 256)
	minDuration(&e, "model.stall_timeout", c.Model.StallTimeout, time.Second)
	intRange(&e, "model.retries", c.Model.Retries, 0, 100)

	if strings.TrimSpace(c.Docker.Image) == "" || strings.ContainsAny(c.Docker.Image, " \t") {
		e.Add("docker.image", 0, "must be an image reference such as nvcr.io/nvidia/sglang:26.01-py3, got %q", c.Docker.Image)
	}
	oneOf(&e, "docker.pull_policy", c.Docker.PullPolicy, "if-missing", "always", "never")
	oneOf(&e, "docker.gpu_driver", c.Docker.GPUDriver, "nvidia", "cdi")
	oneOf(&e, "docker.network", c.Docker.Network, "bridge", "host")
	if !c.Docker.IPCHost && c.Docker.ShmSize < 64<<20 {
		e.Add("docker.shm_size", 0, "must be at least 64MiB when ipc_host is false, got %s", c.Docker.ShmSize)
	}
	for name, v := range c.Docker.Ulimits {
		if !knownUlimits[name] {
			e.Add("docker.ulimits."+name, 0, "unknown ulimit; expected one of: core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack")
		} else if v < -1 {
			e.Add("docker.ulimits."+name, 0, "must be -1 (unlimited) or a non-negative number, got %d", v)
		}
	}
	minDuration(&e, "docker.stop_grace", c.Docker.StopGrace, 0)
	minDuration(&e, "docker.ready_timeout", c.Docker.ReadyTimeout, time.Second)

	d := c.Sessions.Defaults
	if !repoID.MatchString(d.Model) {
		e.Add("sessions.defaults.model", 0, "must be a Hugging Face repo id such as Qwen/Qwen2.5-7B-Instruct, got %q", d.Model)
	}
	if strings.TrimSpace(d.Revision) == "" {
		e.Add("sessions.defaults.revision", 0, "must be a branch, tag or commit, got empty")
	}
	intRange(&e, "sessions.defaults.tp_size", d.TPSize, 1, 8)
	intRange(&e, "sessions.defaults.dp_size", d.DPSize, 1, 8)
	intRange(&e, "sessions.defaults.port", d.Port, 1, 65535)
	intRange(&e, "sessions.defaults.num_requests", d.NumRequests, 1, 100000)
	intRange(&e, "sessions.defaults.max_tokens", d.MaxTokens, 1, 1<<20)
	if d.Temperature < 0 || d.Temperature > 2 {
		e.Add("sessions.defaults.temperature", 0, "must be 0..2, got %g", d.Temperature)
	}
	intRange(&e, "sessions.defaults.num_steps", d.NumSteps, 0, 1<<20)
	minDuration(&e, "sessions.defaults.stop_timeout", d.StopTimeout, 10*time.Second)
	intRange(&e, "sessions.max_concurrent", c.Sessions.MaxConcurrent, 1, 64)
	return e
}

var (
	dottedVersion = regexp.MustCompile(`^\d+(\.\d+)*$`)
	repoID        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)
	knownUlimits  = map[string]bool{"core": true, "cpu": true, "data": true, "fsize": true, "locks": true,
		"memlock": true, "msgqueue": true, "nice": true, "nofile": true, "nproc": true, "rss": true,
		"rtprio": true, "rttime": true, "sigpending": true, "stack": true}
)

func oneOf(e *Errors, field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	e.Add(field, 0, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

func intRange(e *Errors, field string, v, lo, hi int) {
	if v < lo || v > hi {
		e.Add(field, 0, "must be %d..%d, got %d", lo, hi, v)
	}
}

func minDuration(e *Errors, field string, v Duration, lo time.Duration) {
	if v.D() < lo {
		e.Add(field, 0, "must be at least %s, got %s", lo, v.D())
	}
}

func absPath(e *Errors, field, v string, required bool) {
	if v == "" {
		if required {
			e.Add(field, 0, "must be an absolute path, got empty")
		}
		return
	}
	if !filepath.IsAbs(v) {
		e.Add(field, 0, "must be an absolute path, got %q", v)
	}
}

func hostPort(e *Errors, field, v string) {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		e.Add(field, 0, "must be host:port such as 127.0.0.1:7443, got %q", v)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		e.Add(field, 0, "port must be 1..65535, got %q", port)
	}
}

func globs(e *Errors, field string, pats []string) {
	for i, p := range pats {
		if _, err := path.Match(p, "x"); err != nil || p == "" {
			e.Add(field+"["+strconv.Itoa(i)+"]", 0, "must be a glob pattern such as \"*.safetensors\", got %q", p)
		}
	}
}
