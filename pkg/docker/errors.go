package docker

import (
	"github.com/sglangd/sglangd/internal/hint"

	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// HintOf returns the first hint in err's chain, or "".
func HintOf(err error) string { return hint.Of(err) }

// PullFailure says why a pull failed, so callers can branch without
// parsing messages.
type PullFailure string

// Pull failures.
const (
	// PullUnauthenticated: credentials missing or rejected.
	PullUnauthenticated PullFailure = "unauthenticated"
	// PullDenied: the registry refused access, which it also does for
	// repositories that do not exist (Docker Hub, Harbor).
	PullDenied PullFailure = "denied"
	// PullNotFound: no such repository or tag.
	PullNotFound PullFailure = "not_found"
	// PullUnreachable: the registry could not be reached.
	PullUnreachable PullFailure = "unreachable"
	// PullNotPresent: pull policy never and the image is not local.
	PullNotPresent PullFailure = "not_present"
	// PullOther: anything else (disk full, bad manifest...).
	PullOther PullFailure = "other"
)

// PullError is a failed pull. Its errdefs class follows Failure:
// unauthenticated, permission denied, not found, unavailable, or the
// engine's own class.
type PullError struct {
	Ref      string
	Registry string
	Failure  PullFailure
	// Source says where credentials came from ("ngc_api_key",
	// "docker_config", "none"); never the credentials themselves.
	Source string
	Err    error
}

func (e *PullError) Error() string {
	switch e.Failure {
	case PullUnauthenticated:
		return fmt.Sprintf("pull %s: registry %s refused the credentials (%s): %v", e.Ref, e.Registry, sourceText(e.Source), e.Err)
	case PullDenied:
		return fmt.Sprintf("pull %s: access denied by %s (credentials: %s): %v", e.Ref, e.Registry, sourceText(e.Source), e.Err)
	case PullNotFound:
		return fmt.Sprintf("pull %s: image not found on %s: %v", e.Ref, e.Registry, e.Err)
	case PullUnreachable:
		return fmt.Sprintf("pull %s: registry %s unreachable: %v", e.Ref, e.Registry, e.Err)
	case PullNotPresent:
		return fmt.Sprintf("image %s is not present and the pull policy is never", e.Ref)
	}
	return fmt.Sprintf("pull %s: %v", e.Ref, e.Err)
}

func sourceText(s string) string {
	switch s {
	case "", CredentialsNone:
		return "none sent"
	case CredentialsNGC:
		return "NGC API key as $oauthtoken"
	case CredentialsDockerConfig:
		return "from the Docker client config"
	}
	return s
}

// Unwrap returns the engine's error and the failure's class.
func (e *PullError) Unwrap() []error {
	var class error
	switch e.Failure {
	case PullUnauthenticated:
		class = errdefs.ErrUnauthenticated
	case PullDenied:
		class = errdefs.ErrPermissionDenied
	case PullNotFound, PullNotPresent:
		class = errdefs.ErrNotFound
	case PullUnreachable:
		class = errdefs.ErrUnavailable
	}
	if class == nil {
		return []error{e.Err}
	}
	return []error{class, e.Err}
}

// Hint says what to do about the failure.
func (e *PullError) Hint() string {
	switch e.Failure {
	case PullUnauthenticated, PullDenied:
		h := "set NGC_API_KEY or docker.ngc_api_key_file (nvcr.io: user $oauthtoken, password = the key)"
		if e.Registry != "nvcr.io" {
			h = "log in with `docker login " + e.Registry + "` as the user sglangd runs as (docker.use_docker_config: true)"
		}
		if e.Failure == PullDenied {
			return "check docker.image exists, then " + h
		}
		if e.Source != CredentialsNone && e.Source != "" {
			return "the registry rejected the credentials: renew the key or password; " + h
		}
		return h
	case PullNotFound:
		return "check docker.image (repository and tag) against the registry's catalogue"
	case PullUnreachable:
		return "check the host's network, DNS and proxy (dockerd's HTTPS_PROXY), and that the registry is up"
	case PullNotPresent:
		return "pull it first (`sglangctl image pull`) or set docker.pull_policy to if-missing"
	}
	return ""
}

// classifyPull maps the engine's pull error onto a PullFailure by its text:
// the engine reports registry auth failures as HTTP 500 (a wrong password
// reads "unauthorized: authentication required" or just "unauthorized",
// missing credentials "no basic auth credentials"), so the status is no
// guide.
func classifyPull(err error) PullFailure {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "no basic auth credentials"),
		strings.Contains(msg, "unauthorized"),
		strings.Contains(msg, "authentication required"),
		strings.Contains(msg, "incorrect username or password"):
		return PullUnauthenticated
	case strings.Contains(msg, "denied"):
		return PullDenied
	case strings.Contains(msg, "manifest unknown"),
		strings.Contains(msg, "name unknown"),
		strings.Contains(msg, "not found"),
		errdefs.IsNotFound(err):
		return PullNotFound
	case strings.Contains(msg, "connection refused"),
		strings.Contains(msg, "no such host"),
		strings.Contains(msg, "i/o timeout"),
		strings.Contains(msg, "network is unreachable"),
		strings.Contains(msg, "no route to host"),
		strings.Contains(msg, "tls handshake timeout"),
		strings.Contains(msg, "connection reset by peer"),
		strings.Contains(msg, "server misbehaving"),
		strings.Contains(msg, "timeout exceeded while awaiting headers"):
		return PullUnreachable
	}
	return PullOther
}

// ExitError reports a server container that exited while sglangd waited
// for it to become ready.
type ExitError struct {
	Container string
	ExitCode  int
	OOMKilled bool
	// Tail holds the last log lines.
	Tail    []string
	LogPath string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sglang server container %s exited with code %d during start-up", e.Container, e.ExitCode)
	if e.OOMKilled {
		b.WriteString(" (killed by the OOM killer)")
	}
	if len(e.Tail) > 0 {
		fmt.Fprintf(&b, "; last %d log lines:\n%s", len(e.Tail), strings.Join(e.Tail, "\n"))
	}
	return b.String()
}

// Unwrap classifies a start-up crash as a failed precondition: the image,
// model or flags do not work on this host.
func (e *ExitError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// Hint points at the full log.
func (e *ExitError) Hint() string {
	h := "read the server log"
	if e.LogPath != "" {
		h += " at " + e.LogPath
	}
	if e.OOMKilled {
		return h + "; the host ran out of memory: use a smaller model or more host RAM"
	}
	return h + " for the cause (model path, GPU memory, flags in extra args)"
}

// startError classifies a failed container start by the engine's message.
func startError(name string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not select device driver"):
		return hint.With(fmt.Errorf("start container %s: no GPU device driver on this engine: %w: %v", name, errdefs.ErrFailedPrecondition, err),
			"install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker && systemctl restart docker`, or set docker.gpu_driver: cdi on engines with CDI (28.2+)")
	case strings.Contains(msg, "unresolvable CDI devices"):
		return hint.With(fmt.Errorf("start container %s: CDI devices missing: %w: %v", name, errdefs.ErrFailedPrecondition, err),
			"generate the CDI spec: `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`")
	case strings.Contains(msg, "error setting rlimit") || strings.Contains(msg, "setrlimit"):
		return hint.With(fmt.Errorf("start container %s: the engine may not raise the container's ulimits: %w: %v", name, errdefs.ErrFailedPrecondition, err),
			"this engine lacks CAP_SYS_RESOURCE (rootless or unprivileged): remove docker.ulimits.memlock (or lower it) in the config")
	case strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use"):
		return hint.With(fmt.Errorf("start container %s: port in use: %w: %v", name, errdefs.ErrConflict, err),
			"another process or server holds the port: stop it or choose another port")
	case strings.Contains(msg, "Unknown runtime") || strings.Contains(msg, "unknown or invalid runtime"):
		return hint.With(fmt.Errorf("start container %s: %w: %v", name, errdefs.ErrFailedPrecondition, err),
			"the nvidia runtime is not registered with dockerd: `nvidia-ctk runtime configure --runtime=docker`")
	}
	return fmt.Errorf("start container %s: %w", name, err)
}
