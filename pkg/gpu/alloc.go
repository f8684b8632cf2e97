package gpu

import (
	"github.com/sglangd/sglangd/internal/hint"

	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap"
)

// Request asks for GPUs for one session.
type Request struct {
	// Session is the ID the GPUs are recorded under.
	Session string
	// Count is how many GPUs the session needs (tp_size × dp_size). With
	// Devices set it may be zero, meaning len(Devices); otherwise it must
	// equal len(Devices).
	Count int
	// Devices names exact GPUs by UUID ("GPU-8f6c...") or index ("0").
	// Empty lets the manager pick free GPUs, lowest index first.
	Devices []string
	// AllowForeignProcesses accepts GPUs running compute processes that
	// no session holds, on top of Options.AllowForeignProcesses.
	AllowForeignProcesses bool
}

// Allocation records the GPUs a session holds.
type Allocation struct {
	Session string `json:"session"`
	// UUIDs are the GPUs, in the order the session sees them; empty in
	// mode none (the container then gets no device requests).
	UUIDs []string `json:"uuids"`
	// Indices are the GPUs' NVML indices, matching UUIDs.
	Indices []int     `json:"indices"`
	At      time.Time `json:"at"`
}

func (a *Allocation) clone() Allocation {
	c := *a
	c.UUIDs, c.Indices = slices.Clone(a.UUIDs), slices.Clone(a.Indices)
	return c
}

// Allocate reserves GPUs for a session. It never waits for GPUs to become
// free: a request that cannot be met now fails at once.
//
// Errors: invalid argument for a malformed request; already exists when
// the session holds GPUs; not found for a named GPU that does not exist;
// resource exhausted when the host has fewer GPUs than asked for; conflict
// when enough exist but some are held by another session or run foreign
// compute processes (the message names each GPU and why); the driver's
// error without NVML.
//
// In mode none every well-formed request succeeds with no GPUs; naming
// devices is then an invalid argument, since there are none to name.
func (m *Manager) Allocate(ctx context.Context, req Request) (Allocation, error) {
	if err := checkRequest(&req); err != nil {
		return Allocation{}, err
	}
	if m.opts.Mode == ModeNone {
		if len(req.Devices) > 0 {
			return Allocation{}, hint.With(fmt.Errorf("session %s names GPUs %s but gpu.mode is none: %w",
				req.Session, strings.Join(req.Devices, ","), errdefs.ErrInvalidArgument),
				"drop the GPU list from the spec, or set gpu.mode: nvml on a GPU host")
		}
		return m.commit(req.Session, nil, nil)
	}
	lib, syms, err := m.nvml(ctx)
	if err != nil {
		return Allocation{}, err
	}
	// Read NVML outside the lock (it can take milliseconds per GPU); the
	// holder table is re-checked under the lock before committing.
	inv, err := m.readInventory(ctx, lib, syms)
	if err != nil {
		return Allocation{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.allocs[req.Session]; ok {
		return Allocation{}, m.alreadyHolds(req.Session)
	}
	m.markHolders(inv.GPUs)
	allowForeign := req.AllowForeignProcesses || m.opts.AllowForeignProcesses

	var picked []Device
	if len(req.Devices) > 0 {
		picked, err = m.pickExplicit(req, inv.GPUs, allowForeign)
	} else {
		picked, err = m.pickAny(req, inv.GPUs, allowForeign)
	}
	if err != nil {
		return Allocation{}, err
	}
	uuids := make([]string, len(picked))
	indices := make([]int, len(picked))
	for i, d := range picked {
		uuids[i], indices[i] = d.UUID, d.Index
	}
	return m.commitLocked(req.Session, uuids, indices)
}

func checkRequest(req *Request) error {
	if strings.TrimSpace(req.Session) == "" {
		return fmt.Errorf("gpu request: %w: session ID is empty", errdefs.ErrInvalidArgument)
	}
	if len(req.Devices) > 0 {
		if req.Count == 0 {
			req.Count = len(req.Devices)
		}
		if req.Count != len(req.Devices) {
			return fmt.Errorf("session %s: %w: needs %d GPUs (tp_size × dp_size) but names %d (%s); name exactly %d or none",
				req.Session, errdefs.ErrInvalidArgument, req.Count, len(req.Devices), strings.Join(req.Devices, ","), req.Count)
		}
	}
	if req.Count <= 0 {
		return fmt.Errorf("session %s: %w: GPU count must be at least 1 (tp_size × dp_size), got %d", req.Session, errdefs.ErrInvalidArgument, req.Count)
	}
	return nil
}

func (m *Manager) alreadyHolds(session string) error {
	a := m.allocs[session]
	return fmt.Errorf("session %s already holds GPUs %s: %w; release them first", session, strings.Join(a.UUIDs, ","), errdefs.ErrAlreadyExists)
}

// busyReason says why a GPU cannot be given to a session, or "".
func busyReason(d Device, allowForeign bool) string {
	if d.Session != "" {
		return "held by session " + d.Session
	}
	if d.Foreign && !allowForeign {
		var ps []string
		for _, p := range d.Processes {
			s := fmt.Sprintf("pid %d", p.PID)
			if p.Name != "" {
				s += " " + p.Name
			}
			if p.UsedMemoryBytes > 0 {
				s += fmt.Sprintf(" using %d MiB", p.UsedMemoryBytes>>20)
			}
			ps = append(ps, s)
		}
		return fmt.Sprintf("runs %d compute process(es) not started by sglangd (%s)", len(d.Processes), strings.Join(ps, "; "))
	}
	return ""
}

const busyHint = "wait for the other session to finish, name free GPUs in the spec, or set gpu.allow_foreign_processes: true to share GPUs with processes sglangd did not start"

func (m *Manager) pickAny(req Request, devs []Device, allowForeign bool) ([]Device, error) {
	if req.Count > len(devs) {
		return nil, hint.With(fmt.Errorf("session %s needs %d GPUs (tp_size × dp_size) but this host has %d: %w",
			req.Session, req.Count, len(devs), errdefs.ErrResourceExhausted),
			fmt.Sprintf("lower tp_size × dp_size to at most %d, or run the session on a bigger host", len(devs)))
	}
	var free []Device
	var busy []string
	for _, d := range devs {
		if why := busyReason(d, allowForeign); why != "" {
			busy = append(busy, fmt.Sprintf("gpu %d (%s) %s", d.Index, d.UUID, why))
			continue
		}
		free = append(free, d)
	}
	if len(free) < req.Count {
		return nil, hint.With(fmt.Errorf("session %s needs %d GPUs but only %d of %d are free: %s: %w",
			req.Session, req.Count, len(free), len(devs), strings.Join(busy, "; "), errdefs.ErrConflict), busyHint)
	}
	return free[:req.Count], nil
}

func (m *Manager) pickExplicit(req Request, devs []Device, allowForeign bool) ([]Device, error) {
	var picked []Device
	seen := map[string]bool{}
	var busy []string
	for _, id := range req.Devices {
		d, err := findDevice(devs, id)
		if err != nil {
			return nil, fmt.Errorf("session %s: %w", req.Session, err)
		}
		if seen[d.UUID] {
			return nil, fmt.Errorf("session %s: %w: gpu %d (%s) is named twice", req.Session, errdefs.ErrInvalidArgument, d.Index, d.UUID)
		}
		seen[d.UUID] = true
		if why := busyReason(d, allowForeign); why != "" {
			busy = append(busy, fmt.Sprintf("gpu %d (%s) %s", d.Index, d.UUID, why))
		}
		picked = append(picked, d)
	}
	if len(busy) > 0 {
		return nil, hint.With(fmt.Errorf("session %s cannot have the GPUs it names: %s: %w", req.Session, strings.Join(busy, "; "), errdefs.ErrConflict), busyHint)
	}
	return picked, nil
}

// findDevice resolves a GPU named by index or UUID (UUIDs compare
// case-insensitively, as nvidia-smi prints them in lower case but users
// paste them in any case).
func findDevice(devs []Device, id string) (Device, error) {
	id = strings.TrimSpace(id)
	if n, err := strconv.Atoi(id); err == nil {
		for _, d := range devs {
			if d.Index == n {
				return d, nil
			}
		}
		return Device{}, hint.With(fmt.Errorf("gpu index %d: %w: this host has GPUs 0-%d", n, errdefs.ErrNotFound, len(devs)-1),
			"run `sglangctl gpu list` to see the GPUs")
	}
	for _, d := range devs {
		if strings.EqualFold(d.UUID, id) {
			return d, nil
		}
	}
	if !strings.HasPrefix(strings.ToUpper(id), "GPU-") {
		return Device{}, fmt.Errorf("gpu %q: %w: expected an index such as 0 or a full UUID (GPU-8f6c2c1e-...) as nvidia-smi -L prints it", id, errdefs.ErrInvalidArgument)
	}
	return Device{}, hint.With(fmt.Errorf("gpu %s: %w on this host", id, errdefs.ErrNotFound), "run `sglangctl gpu list` to see the GPUs")
}

func (m *Manager) commit(session string, uuids []string, indices []int) (Allocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.allocs[session]; ok {
		return Allocation{}, m.alreadyHolds(session)
	}
	return m.commitLocked(session, uuids, indices)
}

func (m *Manager) commitLocked(session string, uuids []string, indices []int) (Allocation, error) {
	a := &Allocation{Session: session, UUIDs: uuids, Indices: indices, At: m.opts.Now()}
	if a.UUIDs == nil {
		a.UUIDs, a.Indices = []string{}, []int{}
	}
	for _, u := range uuids {
		m.holder[u] = session
	}
	m.allocs[session] = a
	m.log.Info("GPUs allocated", zap.String("session", session), zap.Strings("uuids", uuids), zap.Ints("indices", indices))
	return a.clone(), nil
}

// Restore records an allocation made before a daemon restart (read back
// from the state database) without checking processes: the session's own
// container is expected to be running on those GPUs. It fails with a
// conflict if another session already holds one of them.
func (m *Manager) Restore(a Allocation) error {
	if a.Session == "" {
		return fmt.Errorf("restore allocation: %w: session ID is empty", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.allocs[a.Session]; ok {
		return m.alreadyHolds(a.Session)
	}
	for _, u := range a.UUIDs {
		if s, ok := m.holder[u]; ok {
			return fmt.Errorf("restore session %s: gpu %s is held by session %s: %w", a.Session, u, s, errdefs.ErrConflict)
		}
	}
	if len(a.Indices) != len(a.UUIDs) {
		a.Indices = make([]int, len(a.UUIDs))
		for i := range a.Indices {
			a.Indices[i] = -1
		}
	}
	if a.At.IsZero() {
		a.At = m.opts.Now()
	}
	_, err := m.commitLocked(a.Session, slices.Clone(a.UUIDs), slices.Clone(a.Indices))
	m.allocs[a.Session].At = a.At
	return err
}

// Release frees a session's GPUs and returns what it held. Releasing a
// session that holds nothing is not an error (cleanup paths call it
// unconditionally); ok is false then.
func (m *Manager) Release(session string) (a Allocation, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	held, ok := m.allocs[session]
	if !ok {
		return Allocation{}, false
	}
	for _, u := range held.UUIDs {
		if m.holder[u] == session {
			delete(m.holder, u)
		}
	}
	delete(m.allocs, session)
	m.log.Info("GPUs released", zap.String("session", session), zap.Strings("uuids", held.UUIDs))
	return held.clone(), true
}

// Held returns the allocation of a session, if any.
func (m *Manager) Held(session string) (Allocation, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.allocs[session]
	if !ok {
		return Allocation{}, false
	}
	return a.clone(), true
}

// Allocations lists every session's allocation, oldest first.
func (m *Manager) Allocations() []Allocation {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Allocation, 0, len(m.allocs))
	for _, a := range m.allocs {
		out = append(out, a.clone())
	}
	slices.SortFunc(out, func(a, b Allocation) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.Session, b.Session)
	})
	return out
}
