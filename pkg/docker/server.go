package docker

import (
	"github.com/sglangd/sglangd/internal/hint"

	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"go.uber.org/zap"
)

// Server is a running (or just exited) SGLang server container this
// Manager created or adopted.
type Server struct {
	// ID is the container's ID, Name its name.
	ID   string
	Name string
	// SpecHash identifies the spec it was started from (keep-warm reuse).
	SpecHash string
	// Image is the reference it runs.
	Image string
	// URL is where the host reaches SGLang, http://127.0.0.1:PORT.
	URL      string
	HostPort int
	// LogPath is the host file holding the server's log; while the
	// container runs it is written at LogPath+".partial" and renamed when
	// the container stops.
	LogPath   string
	StartedAt time.Time
	// Adopted is true for containers found running by Reconcile.
	Adopted bool

	m    *Manager
	tail *lineRing

	exited   chan struct{} // closed once the container stopped
	exitCode int
	oom      bool
	logDone  chan struct{} // closed once the log file is complete

	mu      sync.Mutex
	session string
	idle    bool
}

// SessionID is the session using the server now; a warm server changes
// hands between sessions.
func (s *Server) SessionID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// Exited is closed when the container stops for any reason.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitCode returns the container's exit code once Exited is closed.
func (s *Server) ExitCode() (code int, exited bool) {
	select {
	case <-s.exited:
		return s.exitCode, true
	default:
		return 0, false
	}
}

// Tail returns up to n of the last log lines.
func (s *Server) Tail(n int) []string { return s.tail.last(n) }

// Start creates and starts the server container for spec and returns at
// once; use WaitReady (or Run) before sending it requests. The image must
// be present (Pull first). A stale container of the same session (a crash
// between create and start) is replaced.
func (m *Manager) Start(ctx context.Context, spec ServerSpec) (*Server, error) {
	s := spec.withDefaults()
	if err := s.validate(); err != nil {
		return nil, err
	}
	ref, _ := NormalizeRef(s.Image)
	if _, err := m.Inspect(ctx, ref); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, hint.With(fmt.Errorf("server image %s is not present: %w", ref, errdefs.ErrNotFound),
				"pull it first (`sglangctl image pull`)")
		}
		return nil, err
	}
	hash := m.specHash(s, ref)
	cfg, hc := m.containerConfig(s, ref, hash)
	name := m.ContainerName(s.SessionID)
	log := m.log.With(zap.String("session", s.SessionID), zap.String("container", name), zap.String("image", ref))

	created, err := m.create(ctx, name, s.SessionID, cfg, hc)
	if err != nil {
		m.metrics.starts.WithLabelValues("error").Inc()
		return nil, err
	}
	srv := &Server{
		ID: created, Name: name, SpecHash: hash, Image: ref, LogPath: s.LogPath,
		m: m, tail: newLineRing(200), exited: make(chan struct{}), logDone: make(chan struct{}), session: s.SessionID,
	}
	// Register the exit wait before starting, so even an instant crash is
	// seen (next-exit, not not-running: the container is "created" now).
	// Its context ends the client's wait goroutine if nobody reads it.
	waitCtx, cancelWait := context.WithCancel(m.base)
	waitRes := m.cli.ContainerWait(waitCtx, created, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := m.cli.ContainerStart(ctx, created, client.ContainerStartOptions{}); err != nil {
		cancelWait()
		m.metrics.starts.WithLabelValues("error").Inc()
		serr := startError(name, err)
		log.Warn("server container failed to start", zap.Error(err))
		m.removeQuietly(created)
		return nil, serr
	}
	srv.StartedAt = time.Now()
	if err := m.resolveURL(ctx, srv, s.Port); err != nil {
		cancelWait()
		m.removeQuietly(created)
		return nil, err
	}
	m.track(srv)
	m.watch(srv, waitRes, cancelWait)
	log.Info("server container started", zap.String("id", shortID(created)), zap.String("url", srv.URL),
		zap.String("spec_hash", hash), zap.Strings("cmd", redactArgs(cfg.Cmd)), zap.Bool("gpus", !s.GPUs.None()))
	return srv, nil
}

// create creates the container; a leftover of the same session and
// instance under the same name is removed first, anything else holding
// the name is a conflict.
func (m *Manager) create(ctx context.Context, name, session string, cfg *container.Config, hc *container.HostConfig) (string, error) {
	for attempt := 0; ; attempt++ {
		res, err := m.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
		if err == nil {
			for _, w := range res.Warnings {
				m.log.Warn("engine warning on create", zap.String("container", name), zap.String("warning", w))
			}
			return res.ID, nil
		}
		if !errdefs.IsConflict(err) || attempt > 0 {
			return "", m.engineError("create container "+name, err)
		}
		old, ierr := m.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if ierr != nil {
			return "", m.engineError("create container "+name, err)
		}
		l := old.Container.Config.Labels
		if l[LabelManaged] != "true" || l[LabelSession] != session || l[LabelInstance] != m.opts.Instance {
			return "", hint.With(fmt.Errorf("container name %s is taken by another container: %w", name, errdefs.ErrAlreadyExists),
				"remove it (`docker rm -f "+name+"`) if it is a leftover")
		}
		m.mu.Lock()
		_, ours := m.servers[old.Container.ID]
		m.mu.Unlock()
		if ours {
			return "", fmt.Errorf("session %s already has a server container %s: %w", session, name, errdefs.ErrAlreadyExists)
		}
		m.log.Info("replacing leftover container", zap.String("container", name), zap.String("id", shortID(old.Container.ID)))
		if _, err := m.cli.ContainerRemove(ctx, old.Container.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			return "", m.engineError("remove leftover container "+name, err)
		}
	}
}

// resolveURL reads the published port back from the engine. A container
// that already exited has no ports; it leaves URL empty and no error, so
// that WaitReady reports the exit with its code and log.
func (m *Manager) resolveURL(ctx context.Context, srv *Server, port int) error {
	if m.opts.Network == NetworkHost {
		srv.HostPort = port
		srv.URL = "http://127.0.0.1:" + strconv.Itoa(port)
		return nil
	}
	ins, err := m.cli.ContainerInspect(ctx, srv.ID, client.ContainerInspectOptions{})
	if err != nil {
		return m.engineError("inspect container "+srv.Name, err)
	}
	if st := ins.Container.State; st != nil && !st.Running {
		return nil
	}
	p := network.MustParsePort(strconv.Itoa(port) + "/tcp")
	if ins.Container.NetworkSettings != nil {
		for _, b := range ins.Container.NetworkSettings.Ports[p] {
			if hp, err := strconv.Atoi(b.HostPort); err == nil && hp > 0 {
				srv.HostPort = hp
				srv.URL = "http://127.0.0.1:" + b.HostPort
				return nil
			}
		}
	}
	return fmt.Errorf("container %s: port %d/tcp is not published: %w", srv.Name, port, errdefs.ErrInternal)
}

func (m *Manager) track(srv *Server) {
	m.mu.Lock()
	m.servers[srv.ID] = srv
	m.metrics.running.Set(float64(len(m.servers)))
	m.mu.Unlock()
}

func (m *Manager) untrack(srv *Server) {
	m.mu.Lock()
	delete(m.servers, srv.ID)
	m.metrics.running.Set(float64(len(m.servers)))
	m.mu.Unlock()
}

// watch starts the server's log follower and exit watcher; cancelWait
// releases the wait's context once the watcher is done.
func (m *Manager) watch(srv *Server, waitRes client.ContainerWaitResult, cancelWait context.CancelFunc) {
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		defer close(srv.logDone)
		m.followLog(srv)
	}()
	go func() {
		defer m.wg.Done()
		defer cancelWait()
		m.waitExit(srv, waitRes)
	}()
}

// waitExit closes srv.exited when the container stops. A broken wait
// stream (engine restart) falls back to a fresh not-running wait.
func (m *Manager) waitExit(srv *Server, res client.ContainerWaitResult) {
	for {
		select {
		case <-res.Result:
			m.recordExit(srv)
			return
		case err := <-res.Error:
			if m.base.Err() != nil {
				return
			}
			if errdefs.IsNotFound(err) {
				m.recordExit(srv)
				return
			}
			m.log.Debug("container wait broke; waiting again", zap.String("container", srv.Name), zap.Error(err))
			select {
			case <-time.After(time.Second):
			case <-m.base.Done():
				return
			}
			res = m.cli.ContainerWait(m.base, srv.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		}
	}
}

func (m *Manager) recordExit(srv *Server) {
	ctx, cancel := context.WithTimeout(m.base, 10*time.Second)
	defer cancel()
	if ins, err := m.cli.ContainerInspect(ctx, srv.ID, client.ContainerInspectOptions{}); err == nil && ins.Container.State != nil {
		srv.exitCode, srv.oom = ins.Container.State.ExitCode, ins.Container.State.OOMKilled
	} else {
		srv.exitCode = -1
	}
	close(srv.exited)
}

// WaitReady polls GET /health until it answers 200, the container exits
// (an *ExitError with the exit code and log tail, at once), ctx ends, or
// Options.ReadyTimeout passes (context.DeadlineExceeded with the tail).
func (m *Manager) WaitReady(ctx context.Context, srv *Server) error {
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, m.opts.ReadyTimeout)
	defer cancel()
	interval := 200 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last string
	for {
		select {
		case <-srv.exited:
			m.metrics.starts.WithLabelValues("exited").Inc()
			return m.exitError(srv)
		case <-tctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.metrics.starts.WithLabelValues("timeout").Inc()
			return hint.With(fmt.Errorf("sglang server %s not ready after %s (last /health: %s): %w; last log lines:\n%s",
				srv.Name, m.opts.ReadyTimeout, last, context.DeadlineExceeded, joinLines(srv.Tail(m.opts.LogTailLines))),
				"loading big weights takes long: raise docker.ready_timeout, or read the server log at "+srv.LogPath)
		case <-timer.C:
		}
		ok, status := false, "no port (container not running)"
		if srv.URL != "" {
			ok, status = m.probe(tctx, srv.URL)
		}
		if ok {
			m.metrics.starts.WithLabelValues("ready").Inc()
			m.metrics.readySeconds.Observe(time.Since(start).Seconds())
			m.log.Info("sglang server ready", zap.String("container", srv.Name), zap.String("url", srv.URL),
				zap.Duration("took", time.Since(start)))
			return nil
		}
		last = status
		timer.Reset(interval)
		interval = min(interval*3/2, 2*time.Second)
	}
}

func (m *Manager) probe(ctx context.Context, url string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return false, "no answer"
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, resp.Status
}

// exitError builds the error for a container that died, once its log is
// complete (bounded: a stuck log stream must not hide the exit).
func (m *Manager) exitError(srv *Server) error {
	select {
	case <-srv.logDone:
	case <-time.After(5 * time.Second):
	}
	e := &ExitError{Container: srv.Name, ExitCode: srv.exitCode, OOMKilled: srv.oom,
		Tail: srv.Tail(m.opts.LogTailLines), LogPath: srv.LogPath}
	m.log.Warn("sglang server exited during start-up", zap.String("container", srv.Name), zap.Int("exit_code", e.ExitCode),
		zap.Bool("oom_killed", e.OOMKilled))
	return e
}

// Run starts a server and waits until it is ready. If it never gets
// ready the container is stopped and removed (its log file stays).
func (m *Manager) Run(ctx context.Context, spec ServerSpec) (*Server, error) {
	srv, err := m.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := m.WaitReady(ctx, srv); err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.StopGrace+30*time.Second)
		defer cancel()
		if serr := m.Stop(sctx, srv); serr != nil {
			m.log.Warn("could not remove failed server container", zap.String("container", srv.Name), zap.Error(serr))
		}
		return nil, err
	}
	return srv, nil
}

// Stop stops the container (SIGTERM, SIGKILL after Options.StopGrace),
// waits for its log to be complete, and removes it. Stopping a container
// that is gone is not an error.
func (m *Manager) Stop(ctx context.Context, srv *Server) error {
	grace := int(m.opts.StopGrace.Seconds())
	log := m.log.With(zap.String("container", srv.Name), zap.String("session", srv.SessionID()))
	if _, err := m.cli.ContainerStop(ctx, srv.ID, client.ContainerStopOptions{Timeout: &grace}); err != nil && !errdefs.IsNotFound(err) {
		return m.engineError("stop container "+srv.Name, err)
	}
	for _, ch := range []chan struct{}{srv.exited, srv.logDone} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: %w", srv.Name, ctx.Err())
		}
	}
	if _, err := m.cli.ContainerRemove(ctx, srv.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		return m.engineError("remove container "+srv.Name, err)
	}
	m.untrack(srv)
	log.Info("server container stopped and removed", zap.Int("exit_code", srv.exitCode))
	return nil
}

// removeQuietly force-removes a container that failed before it was
// tracked; errors are logged, the original failure matters more.
func (m *Manager) removeQuietly(id string) {
	ctx, cancel := context.WithTimeout(m.base, 30*time.Second)
	defer cancel()
	if _, err := m.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		m.log.Warn("could not remove container", zap.String("id", shortID(id)), zap.Error(err))
	}
}

// Get returns the server the session uses, if any.
func (m *Manager) Get(sessionID string) (*Server, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, srv := range m.servers {
		if srv.SessionID() == sessionID && !srv.isIdle() {
			return srv, true
		}
	}
	return nil, false
}

// Servers lists the servers the Manager runs or adopted.
func (m *Manager) Servers() []*Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Server, 0, len(m.servers))
	for _, srv := range m.servers {
		out = append(out, srv)
	}
	return out
}

func (s *Server) isIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idle
}

// redactArgs hides the values of secret flags (--api-key,
// --admin-api-key, anything naming a token or password) for logging.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	secret := func(flag string) bool {
		f := strings.ToLower(flag)
		return strings.HasPrefix(f, "--") && (strings.Contains(f, "key") || strings.Contains(f, "token") || strings.Contains(f, "password") || strings.Contains(f, "secret"))
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if name, _, ok := strings.Cut(a, "="); ok && secret(name) {
			out[i] = name + "=<redacted>"
			continue
		}
		out[i] = a
		if secret(a) && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			out[i+1] = "<redacted>"
			i++
		}
	}
	return out
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
