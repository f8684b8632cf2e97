package operation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap/zaptest"
)

func TestStartJoinsRunningOperationWithSameKey(t *testing.T) {
	m := NewManager(context.Background(), zaptest.NewLogger(t))
	defer m.Close()
	release := make(chan struct{})
	var runs atomic.Int32
	fn := func(ctx context.Context, report func(string, any)) (any, error) {
		runs.Add(1)
		<-release
		return "done", nil
	}
	a, joinedA := m.Start("model-pull", "Qwen/Qwen2.5-7B-Instruct@abc", fn)
	b, joinedB := m.Start("model-pull", "Qwen/Qwen2.5-7B-Instruct@abc", fn)
	c, joinedC := m.Start("model-pull", "other@def", fn)
	if joinedA || !joinedB || joinedC || a != b || a == c {
		t.Fatalf("joined %v %v %v, same %v", joinedA, joinedB, joinedC, a == b)
	}
	close(release)
	for _, op := range []*Op{a, c} {
		res, err := op.Wait(context.Background())
		if err != nil || res != "done" {
			t.Errorf("%s: %v %v", op.ID(), res, err)
		}
	}
	if runs.Load() != 2 {
		t.Errorf("body ran %d times, want 2", runs.Load())
	}
	// Once finished, the same key starts afresh.
	d, joined := m.Start("model-pull", "Qwen/Qwen2.5-7B-Instruct@abc", func(context.Context, func(string, any)) (any, error) { return nil, nil })
	if joined || d == a {
		t.Error("a finished operation was joined")
	}
	if _, err := d.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWatchReplaysSnapshotThenLive(t *testing.T) {
	m := NewManager(context.Background(), zaptest.NewLogger(t))
	defer m.Close()
	step := make(chan struct{})
	op, _ := m.Start("pull", "x", func(ctx context.Context, report func(string, any)) (any, error) {
		report("a", 1)
		report("b", 1)
		report("a", 2) // the snapshot keeps only the latest per key
		<-step
		report("b", 2)
		report("", "overall")
		return nil, nil
	})
	// Wait until the first three events happened.
	for len(op.Snapshot()) < 2 || op.Snapshot()[0].Value != 2 {
		time.Sleep(time.Millisecond)
	}
	var got []string
	errc := make(chan error, 1)
	go func() {
		errc <- op.Watch(context.Background(), func(ev Event) error {
			got = append(got, fmt.Sprintf("%s=%v", ev.Key, ev.Value))
			if len(got) == 2 {
				close(step)
			}
			return nil
		})
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	want := []string{"a=2", "b=1", "b=2", "=overall"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("watched %v, want %v", got, want)
	}
}

func TestSlowWatcherGetsSnapshotAndNeverBlocks(t *testing.T) {
	m := NewManager(context.Background(), zaptest.NewLogger(t))
	defer m.Close()
	gate := make(chan struct{})
	op, _ := m.Start("pull", "x", func(ctx context.Context, report func(string, any)) (any, error) {
		report("f", 0)
		<-gate
		for i := 1; i <= 5*ringSize; i++ {
			report(fmt.Sprintf("f%d", i%3), i)
		}
		return "ok", nil
	})
	var last = map[string]any{}
	var mu sync.Mutex
	first := true
	err := op.Watch(context.Background(), func(ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		last[ev.Key] = ev.Value
		if first {
			first = false
			close(gate)
			// Stall long enough for the operation to lap the ring.
			<-op.Done()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Whatever was skipped, the watcher ends with the final state per key.
	n := 5 * ringSize
	for k, want := range map[string]int{"f0": n - n%3, "f1": n - (n-1)%3, "f2": n - (n-2)%3} {
		if last[k] != want {
			t.Errorf("last %s = %v, want %d", k, last[k], want)
		}
	}
}

func TestOutcomes(t *testing.T) {
	m := NewManager(context.Background(), zaptest.NewLogger(t))
	defer m.Close()
	boom := fmt.Errorf("disk full: %w", errdefs.ErrResourceExhausted)
	tests := []struct {
		name  string
		fn    Func
		act   func(*Op)
		state State
		class error
	}{
		{"success", func(context.Context, func(string, any)) (any, error) { return 42, nil }, nil, Succeeded, nil},
		{"failure", func(context.Context, func(string, any)) (any, error) { return nil, boom }, nil, Failed, errdefs.ErrResourceExhausted},
		{"panic", func(context.Context, func(string, any)) (any, error) { panic("oops") }, nil, Failed, errdefs.ErrInternal},
		{"cancel", func(ctx context.Context, _ func(string, any)) (any, error) { <-ctx.Done(); return nil, ctx.Err() },
			func(op *Op) { op.Cancel() }, Canceled, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, _ := m.Start("test", tt.name, tt.fn)
			if tt.act != nil {
				tt.act(op)
			}
			_, err := op.Wait(context.Background())
			info := op.Info()
			if info.State != tt.state || (tt.class == nil) != (err == nil) || tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("state %s err %v; want %s %v", info.State, err, tt.state, tt.class)
			}
			if info.Ended.IsZero() {
				t.Error("no end time")
			}
			got, err := m.Get(info.ID)
			if err != nil || got != op {
				t.Errorf("Get(%s): %v", info.ID, err)
			}
		})
	}
	if _, err := m.Get("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(nope) = %v", err)
	}
	if n := len(m.List()); n != 4 {
		t.Errorf("List has %d operations, want 4", n)
	}
}

func TestCloseCancelsRunning(t *testing.T) {
	m := NewManager(context.Background(), zaptest.NewLogger(t))
	op, _ := m.Start("pull", "x", func(ctx context.Context, _ func(string, any)) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	m.Close()
	if st := op.Info().State; st != Canceled {
		t.Errorf("state after Close: %s", st)
	}
}

func TestFinishedAreBounded(t *testing.T) {
	m := NewManager(context.Background(), zaptest.NewLogger(t))
	defer m.Close()
	m.keep = 3
	var first *Op
	for i := range 5 {
		op, _ := m.Start("k", fmt.Sprint(i), func(context.Context, func(string, any)) (any, error) { return nil, nil })
		_, _ = op.Wait(context.Background())
		if i == 0 {
			first = op
		}
	}
	if n := len(m.List()); n != 3 {
		t.Errorf("kept %d finished operations, want 3", n)
	}
	if _, err := m.Get(first.ID()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("oldest still there: %v", err)
	}
}
