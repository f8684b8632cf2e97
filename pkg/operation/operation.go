// Package operation runs long operations (model pulls, image pulls,
// profiling sessions) detached from the API request that started them, and
// lets any number of clients attach to their progress.
//
// An operation runs under the manager's context (the daemon's), never the
// request's, so a CLI that disconnects does not cancel it; cancelling is
// its own call. Starting an operation whose kind and key match a running
// one joins it instead of starting a second (one download per repository
// commit, one pull per image).
//
// Progress events carry a key (a file path, a layer id; "" for overall).
// An operation keeps the latest event per key and a ring of recent events,
// so a client that attaches late, or falls behind, first gets a snapshot of
// the latest state per key and then live events. Events are never dropped
// for a client that keeps up, and a slow client never blocks the operation.
package operation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap"
)

// State is an operation's life-cycle state.
type State string

// Operation states.
const (
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Canceled  State = "canceled"
)

// ringSize is how many recent events each operation keeps for clients
// that attach or fall behind; beyond it they get the per-key snapshot.
const ringSize = 512

// Event is one progress report.
type Event struct {
	// Seq numbers events of one operation from 1.
	Seq uint64
	// Key groups events: the latest per key forms the snapshot.
	Key string
	// Value is the feature's own event, JSON-serialisable.
	Value any
}

// Info is an operation's state, without its events.
type Info struct {
	ID      string
	Kind    string
	Key     string
	State   State
	Started time.Time
	Ended   time.Time
	// Err is set for Failed and Canceled.
	Err error
	// Result is what the operation returned on success.
	Result any
}

// Func is an operation's body. report publishes progress under a key; it
// never blocks. ctx ends when the operation is cancelled or the manager
// closes.
type Func func(ctx context.Context, report func(key string, v any)) (result any, err error)

// Manager owns the running and recently finished operations.
type Manager struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    *zap.Logger
	wg     sync.WaitGroup
	nextID atomic.Uint64
	// keep is how many finished operations stay queryable.
	keep int

	mu       sync.Mutex
	ops      map[string]*Op
	running  map[string]*Op // by kind + "\x00" + key
	finished []string       // ids, oldest first
}

// NewManager returns a manager whose operations run under ctx.
func NewManager(ctx context.Context, logger *zap.Logger) *Manager {
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Manager{ctx: ctx, cancel: cancel, log: logger.Named("operation"), keep: 100,
		ops: map[string]*Op{}, running: map[string]*Op{}}
}

// Start runs fn as a new operation of kind, or returns the running
// operation with the same kind and key (joined = true).
func (m *Manager) Start(kind, key string, fn Func) (op *Op, joined bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rk := kind + "\x00" + key
	if op, ok := m.running[rk]; ok {
		return op, true
	}
	ctx, cancel := context.WithCancel(m.ctx)
	op = &Op{
		info:    Info{ID: kind + "-" + strconv.FormatUint(m.nextID.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixMilli(), 36), Kind: kind, Key: key, State: Running, Started: time.Now()},
		cancel:  cancel,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		latest:  map[string]Event{},
	}
	m.ops[op.info.ID] = op
	m.running[rk] = op
	m.wg.Add(1)
	go m.run(ctx, rk, op, fn)
	m.log.Info("operation started", zap.String("id", op.info.ID), zap.String("kind", kind), zap.String("key", key))
	return op, false
}

func (m *Manager) run(ctx context.Context, rk string, op *Op, fn Func) {
	defer m.wg.Done()
	var (
		result any
		err    error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("operation %s panicked: %v: %w", op.info.ID, p, errdefs.ErrInternal)
			}
		}()
		result, err = fn(ctx, op.report)
	}()
	// Bookkeeping first, so whoever sees Done also sees the manager's
	// final view of the operation.
	m.mu.Lock()
	delete(m.running, rk)
	m.finished = append(m.finished, op.info.ID)
	for len(m.finished) > m.keep {
		delete(m.ops, m.finished[0])
		m.finished = m.finished[1:]
	}
	m.mu.Unlock()
	op.finish(result, err, ctx.Err() != nil)
	info := op.Info()
	fields := []zap.Field{zap.String("id", info.ID), zap.String("state", string(info.State)), zap.Duration("took", info.Ended.Sub(info.Started))}
	if info.Err != nil {
		m.log.Warn("operation ended", append(fields, zap.Error(info.Err))...)
	} else {
		m.log.Info("operation ended", fields...)
	}
}

// Get returns the operation with id.
func (m *Manager) Get(id string) (*Op, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	op, ok := m.ops[id]
	if !ok {
		return nil, fmt.Errorf("operation %q: %w (finished operations are kept for the last %d)", id, errdefs.ErrNotFound, m.keep)
	}
	return op, nil
}

// List returns every known operation, newest first.
func (m *Manager) List() []Info {
	m.mu.Lock()
	ops := make([]*Op, 0, len(m.ops))
	for _, op := range m.ops {
		ops = append(ops, op)
	}
	m.mu.Unlock()
	out := make([]Info, len(ops))
	for i, op := range ops {
		out[i] = op.Info()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out
}

// Close cancels every running operation and waits for them to return.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// Op is one operation.
type Op struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	info    Info
	seq     uint64
	ring    [ringSize]Event
	latest  map[string]Event
	order   []string      // keys in first-seen order
	changed chan struct{} // closed and replaced on every event
}

func (o *Op) report(key string, v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.info.State != Running {
		return
	}
	o.seq++
	ev := Event{Seq: o.seq, Key: key, Value: v}
	o.ring[o.seq%ringSize] = ev
	if _, ok := o.latest[key]; !ok {
		o.order = append(o.order, key)
	}
	o.latest[key] = ev
	close(o.changed)
	o.changed = make(chan struct{})
}

func (o *Op) finish(result any, err error, canceled bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.info.Ended = time.Now()
	switch {
	case err == nil:
		o.info.State, o.info.Result = Succeeded, result
	case canceled && errors.Is(err, context.Canceled):
		o.info.State, o.info.Err = Canceled, err
	default:
		o.info.State, o.info.Err = Failed, err
	}
	close(o.changed)
	o.changed = make(chan struct{})
	close(o.done)
}

// Info returns the operation's current state.
func (o *Op) Info() Info {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.info
}

// ID returns the operation's id.
func (o *Op) ID() string { return o.Info().ID }

// Done is closed when the operation has ended.
func (o *Op) Done() <-chan struct{} { return o.done }

// Cancel asks the operation to stop; Wait or Watch tell when it has.
func (o *Op) Cancel() { o.cancel() }

// Wait blocks until the operation ends or ctx does, and returns the
// operation's result and error.
func (o *Op) Wait(ctx context.Context) (any, error) {
	select {
	case <-o.done:
		info := o.Info()
		return info.Result, info.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Snapshot returns the latest event of every key, in first-seen order.
func (o *Op) Snapshot() []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.snapshotLocked()
}

func (o *Op) snapshotLocked() []Event {
	out := make([]Event, 0, len(o.order))
	for _, k := range o.order {
		out = append(out, o.latest[k])
	}
	return out
}

// Watch calls fn with the snapshot, then with every later event, until the
// operation ends (returning its error), fn fails, or ctx ends. Watching
// never slows the operation: a watcher that falls more than the ring
// behind gets a fresh snapshot instead of the events it missed.
func (o *Op) Watch(ctx context.Context, fn func(Event) error) error {
	o.mu.Lock()
	next := o.seq + 1
	snap := o.snapshotLocked()
	o.mu.Unlock()
	for _, ev := range snap {
		if err := fn(ev); err != nil {
			return err
		}
	}
	for {
		o.mu.Lock()
		var batch []Event
		switch {
		case o.seq+1 == next:
		case o.seq-next+1 > ringSize:
			batch = o.snapshotLocked()
		default:
			for s := next; s <= o.seq; s++ {
				batch = append(batch, o.ring[s%ringSize])
			}
		}
		next = o.seq + 1
		changed, ended := o.changed, o.info.State != Running
		err := o.info.Err
		o.mu.Unlock()
		for _, ev := range batch {
			if err := fn(ev); err != nil {
				return err
			}
		}
		if ended {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
