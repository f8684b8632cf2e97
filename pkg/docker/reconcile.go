package docker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"go.uber.org/zap"
)

// SessionChecker tells Reconcile whether a session still runs, so its
// server is adopted rather than removed. The session store implements it.
type SessionChecker interface {
	IsActive(sessionID string) bool
}

// SessionCheckFunc adapts a function to SessionChecker.
type SessionCheckFunc func(sessionID string) bool

// IsActive calls f.
func (f SessionCheckFunc) IsActive(sessionID string) bool { return f(sessionID) }

// Reconcile actions.
const (
	ActionAdopted = "adopted"
	ActionWarm    = "kept_warm"
	ActionRemoved = "removed"
	ActionFailed  = "failed"
)

// ReconcileResult is what Reconcile did with one container.
type ReconcileResult struct {
	ContainerID string `json:"container_id"`
	Name        string `json:"name"`
	SessionID   string `json:"session_id"`
	// State is the engine's state when found (running, exited, created...).
	State  string `json:"state"`
	Action string `json:"action"`
	Error  string `json:"error,omitempty"`
}

// Reconcile runs at daemon start. For every container labelled as this
// instance's: a running one whose session is still active is adopted
// (tracked again, its log followed, available through Get); with KeepWarm
// one more running container may be adopted as the idle warm server;
// everything else is stopped with the grace period, its log saved, and
// removed. Each decision is logged and returned.
func (m *Manager) Reconcile(ctx context.Context, sessions SessionChecker) ([]ReconcileResult, error) {
	f := make(client.Filters).Add("label", LabelManaged+"=true")
	if m.opts.Instance != "" {
		f.Add("label", LabelInstance+"="+m.opts.Instance)
	}
	list, err := m.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, m.engineError("list containers", err)
	}
	var out []ReconcileResult
	haveWarm := false
	for _, srv := range m.Servers() {
		haveWarm = haveWarm || srv.isIdle()
	}
	for _, c := range list.Items {
		m.mu.Lock()
		_, known := m.servers[c.ID]
		m.mu.Unlock()
		if known {
			continue
		}
		session := c.Labels[LabelSession]
		r := ReconcileResult{ContainerID: c.ID, Name: containerName(c), SessionID: session, State: string(c.State)}
		running := c.State == container.StateRunning
		log := m.log.With(zap.String("container", r.Name), zap.String("session", session), zap.String("state", r.State))
		switch {
		case running && sessions != nil && sessions.IsActive(session):
			r.Action = ActionAdopted
			if _, err := m.adopt(ctx, c, false); err != nil {
				r.Action, r.Error = ActionFailed, err.Error()
			}
		case running && m.opts.KeepWarm && !haveWarm:
			r.Action = ActionWarm
			if _, err := m.adopt(ctx, c, true); err != nil {
				r.Action, r.Error = ActionFailed, err.Error()
			} else {
				haveWarm = true
			}
		default:
			r.Action = ActionRemoved
			if err := m.removeLeftover(ctx, c); err != nil {
				r.Action, r.Error = ActionFailed, err.Error()
			}
		}
		if r.Error != "" {
			log.Warn("reconcile: could not handle leftover container", zap.String("action", r.Action), zap.String("error", r.Error))
		} else {
			log.Info("reconcile: leftover server container", zap.String("action", r.Action))
		}
		out = append(out, r)
	}
	return out, nil
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		n := c.Names[0]
		if len(n) > 0 && n[0] == '/' {
			n = n[1:]
		}
		return n
	}
	return shortID(c.ID)
}

// adopt tracks a running container found at start-up, following its log
// again from the beginning.
func (m *Manager) adopt(ctx context.Context, c container.Summary, idle bool) (*Server, error) {
	ins, err := m.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		return nil, m.engineError("inspect container "+containerName(c), err)
	}
	port, _ := strconv.Atoi(c.Labels[LabelPort])
	if port == 0 {
		port = DefaultPort
	}
	srv := &Server{
		ID: c.ID, Name: containerName(c), SpecHash: c.Labels[LabelSpecHash], Image: ins.Container.Config.Image,
		LogPath: c.Labels[LabelLogPath], Adopted: true,
		m: m, tail: newLineRing(200), exited: make(chan struct{}), logDone: make(chan struct{}),
		session: c.Labels[LabelSession], idle: idle,
	}
	if ins.Container.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, ins.Container.State.StartedAt); err == nil {
			srv.StartedAt = t
		}
	}
	if err := m.resolveURL(ctx, srv, port); err != nil {
		return nil, err
	}
	waitCtx, cancelWait := context.WithCancel(m.base)
	waitRes := m.cli.ContainerWait(waitCtx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	m.track(srv)
	m.watch(srv, waitRes, cancelWait)
	return srv, nil
}

// removeLeftover stops a container nobody claims, saves its whole log
// where its label says, and removes it.
func (m *Manager) removeLeftover(ctx context.Context, c container.Summary) error {
	name := containerName(c)
	if c.State == container.StateRunning || c.State == container.StateRestarting || c.State == container.StatePaused {
		grace := int(m.opts.StopGrace.Seconds())
		if _, err := m.cli.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &grace}); err != nil && !errdefs.IsNotFound(err) {
			return m.engineError("stop container "+name, err)
		}
	}
	if path := c.Labels[LabelLogPath]; path != "" {
		if err := m.saveLog(ctx, c.ID, path); err != nil {
			m.log.Warn("could not save the log of a leftover container", zap.String("container", name), zap.Error(err))
		}
	}
	if _, err := m.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		return m.engineError("remove container "+name, err)
	}
	return nil
}

// Acquire returns a ready server for spec: with KeepWarm, the idle warm
// server of the same spec if it still answers /health (it changes hands to
// spec's session; its container name and log file stay the first
// session's); otherwise a new one from Run. An idle warm server of another
// spec is stopped first, since it may hold the GPUs the new one needs.
func (m *Manager) Acquire(ctx context.Context, spec ServerSpec) (*Server, error) {
	s := spec.withDefaults()
	if err := s.validate(); err != nil {
		return nil, err
	}
	if m.opts.KeepWarm {
		ref, _ := NormalizeRef(s.Image)
		hash := m.specHash(s, ref)
		for _, srv := range m.Servers() {
			if !srv.isIdle() {
				continue
			}
			_, exited := srv.ExitCode()
			if srv.SpecHash == hash && !exited {
				if ok, _ := m.probe(ctx, srv.URL); ok {
					srv.mu.Lock()
					srv.idle, srv.session = false, s.SessionID
					srv.mu.Unlock()
					m.metrics.starts.WithLabelValues("reused").Inc()
					m.log.Info("reusing warm sglang server", zap.String("container", srv.Name), zap.String("session", s.SessionID))
					return srv, nil
				}
			}
			if err := m.Stop(ctx, srv); err != nil {
				return nil, fmt.Errorf("stop idle warm server %s: %w", srv.Name, err)
			}
		}
	}
	return m.Run(ctx, spec)
}

// Release ends a session's use of srv: with KeepWarm a healthy server
// stays running, idle, for Acquire (any other idle server is stopped, so
// at most one is warm); otherwise it is stopped and removed.
func (m *Manager) Release(ctx context.Context, srv *Server) error {
	if _, exited := srv.ExitCode(); m.opts.KeepWarm && !exited {
		if ok, _ := m.probe(ctx, srv.URL); ok {
			for _, other := range m.Servers() {
				if other != srv && other.isIdle() {
					if err := m.Stop(ctx, other); err != nil {
						return err
					}
				}
			}
			srv.mu.Lock()
			srv.idle = true
			srv.mu.Unlock()
			m.log.Info("keeping sglang server warm", zap.String("container", srv.Name), zap.String("spec_hash", srv.SpecHash))
			return nil
		}
	}
	return m.Stop(ctx, srv)
}
