package gpu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestManager_Allocate(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t, 4, "580.159.04", 13000)
	m, _, clk := newTestManager(t, h, Options{})

	a, err := m.Allocate(ctx, Request{Session: "s1", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.UUIDs, []string{h.UUID(0), h.UUID(1)}) || !slices.Equal(a.Indices, []int{0, 1}) || !a.At.Equal(clk.Now()) {
		t.Fatalf("s1 got %+v; want GPUs 0 and 1 at %v", a, clk.Now())
	}
	clk.Advance(time.Minute)
	b, err := m.Allocate(ctx, Request{Session: "s2", Count: 1})
	if err != nil || !slices.Equal(b.Indices, []int{2}) {
		t.Fatalf("s2 got %+v, %v; want GPU 2, the lowest free", b, err)
	}

	// Two GPUs exist that s1 and s2 do not hold... only one is free.
	_, err = m.Allocate(ctx, Request{Session: "s3", Count: 2})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("s3 asking 2 of 1 free = %v; want conflict", err)
	}
	for _, s := range []string{"needs 2 GPUs but only 1 of 4 are free", "gpu 0 (" + h.UUID(0) + ") held by session s1", "gpu 2 (" + h.UUID(2) + ") held by session s2"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("conflict %q lacks %q", err, s)
		}
	}
	if hint := hintOf(err); !strings.Contains(hint, "allow_foreign_processes") {
		t.Errorf("conflict hint = %q", hint)
	}

	inv, err := m.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, d := range inv.GPUs {
		holders = append(holders, d.Session)
	}
	if !slices.Equal(holders, []string{"s1", "s1", "s2", ""}) {
		t.Errorf("inventory holders = %q", holders)
	}
	if got := m.Allocations(); len(got) != 2 || got[0].Session != "s1" || got[1].Session != "s2" {
		t.Errorf("Allocations = %+v; want s1 then s2", got)
	}

	if _, err := m.Allocate(ctx, Request{Session: "s1", Count: 1}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("s1 again = %v; want already exists", err)
	}

	rel, ok := m.Release("s1")
	if !ok || !slices.Equal(rel.UUIDs, a.UUIDs) {
		t.Fatalf("Release(s1) = %+v, %v", rel, ok)
	}
	if _, ok := m.Release("s1"); ok {
		t.Error("second Release(s1) reported something released")
	}
	if _, ok := m.Held("s1"); ok {
		t.Error("s1 still holds GPUs after release")
	}
	c, err := m.Allocate(ctx, Request{Session: "s3", Count: 2})
	if err != nil || !slices.Equal(c.Indices, []int{0, 1}) {
		t.Errorf("s3 after s1's release = %+v, %v; want GPUs 0 and 1", c, err)
	}
}

func TestManager_Allocate_Errors(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t, 4, "580.159.04", 13000)
	h.Foreign(1, 4242, "python3", 10<<30)
	m, _, _ := newTestManager(t, h, Options{})
	if _, err := m.Allocate(ctx, Request{Session: "holder", Devices: []string{"3"}}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		req   Request
		class error
		has   []string
	}{
		{name: "too many", req: Request{Session: "s", Count: 8}, class: errdefs.ErrResourceExhausted,
			has: []string{"needs 8 GPUs", "this host has 4"}},
		{name: "busy", req: Request{Session: "s", Count: 3}, class: errdefs.ErrConflict,
			has: []string{"only 2 of 4 are free", "gpu 1 (" + h.UUID(1) + ") runs 1 compute process(es) not started by sglangd (pid 4242 python3 using 10240 MiB)", "held by session holder"}},
		{name: "zero", req: Request{Session: "s", Count: 0}, class: errdefs.ErrInvalidArgument, has: []string{"at least 1"}},
		{name: "negative", req: Request{Session: "s", Count: -2}, class: errdefs.ErrInvalidArgument},
		{name: "no session", req: Request{Count: 1}, class: errdefs.ErrInvalidArgument, has: []string{"session ID"}},
		{name: "count mismatch", req: Request{Session: "s", Count: 2, Devices: []string{"0"}}, class: errdefs.ErrInvalidArgument,
			has: []string{"needs 2 GPUs", "names 1 (0)"}},
		{name: "explicit foreign", req: Request{Session: "s", Devices: []string{"0", h.UUID(1)}}, class: errdefs.ErrConflict,
			has: []string{"gpu 1 (" + h.UUID(1) + ") runs 1 compute process", "pid 4242"}},
		{name: "explicit held", req: Request{Session: "s", Devices: []string{strings.ToLower(h.UUID(3))}}, class: errdefs.ErrConflict,
			has: []string{"held by session holder"}},
		{name: "unknown index", req: Request{Session: "s", Devices: []string{"7"}}, class: errdefs.ErrNotFound,
			has: []string{"gpu index 7", "GPUs 0-3"}},
		{name: "unknown uuid", req: Request{Session: "s", Devices: []string{"GPU-ffffffff-0000-0000-0000-000000000000"}}, class: errdefs.ErrNotFound},
		{name: "not an id", req: Request{Session: "s", Devices: []string{"first"}}, class: errdefs.ErrInvalidArgument, has: []string{`"first"`}},
		{name: "named twice", req: Request{Session: "s", Devices: []string{"0", h.UUID(0)}}, class: errdefs.ErrInvalidArgument, has: []string{"named twice"}},
		{name: "session holds", req: Request{Session: "holder", Count: 1}, class: errdefs.ErrAlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := m.Allocate(ctx, tt.req)
			if !errors.Is(err, tt.class) {
				t.Fatalf("Allocate(%+v) = %+v, %v; want %v", tt.req, a, err, tt.class)
			}
			for _, s := range tt.has {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
	if got := m.Allocations(); len(got) != 1 {
		t.Errorf("failed requests left allocations behind: %+v", got)
	}
}

func TestManager_Allocate_Explicit(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t, 4, "580.159.04", 13000)
	h.Foreign(2, 99, "jupyter", 1<<30)
	m, _, _ := newTestManager(t, h, Options{})

	// Order is the spec's: the session sees the GPUs as it named them.
	a, err := m.Allocate(ctx, Request{Session: "s1", Count: 2, Devices: []string{"3", " " + strings.ToLower(h.UUID(1))}})
	if err != nil || !slices.Equal(a.UUIDs, []string{h.UUID(3), h.UUID(1)}) || !slices.Equal(a.Indices, []int{3, 1}) {
		t.Fatalf("explicit = %+v, %v; want GPUs 3 and 1 in that order", a, err)
	}
	// Foreign processes allowed per request.
	b, err := m.Allocate(ctx, Request{Session: "s2", Devices: []string{"2"}, AllowForeignProcesses: true})
	if err != nil || !slices.Equal(b.Indices, []int{2}) {
		t.Errorf("explicit foreign, allowed = %+v, %v", b, err)
	}
}

func TestManager_Allocate_ForeignAllowedByConfig(t *testing.T) {
	h := newFakeHost(t, 2, "580.159.04", 13000)
	h.Foreign(0, 99, "jupyter", 1<<30)
	h.Foreign(1, 100, "jupyter", 1<<30)
	strict, _, _ := newTestManager(t, h, Options{})
	if _, err := strict.Allocate(context.Background(), Request{Session: "s", Count: 1}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("strict manager on busy GPUs = %v; want conflict", err)
	}
	lax, _, _ := newTestManager(t, h, Options{AllowForeignProcesses: true})
	a, err := lax.Allocate(context.Background(), Request{Session: "s", Count: 2})
	if err != nil || len(a.UUIDs) != 2 {
		t.Errorf("allow_foreign_processes manager = %+v, %v; want both GPUs", a, err)
	}
}

// Concurrent requests never hand one GPU to two sessions, and the one too
// many fails at once instead of waiting.
func TestManager_Allocate_Concurrent(t *testing.T) {
	h := newFakeHost(t, 8, "580.159.04", 13000)
	m, _, _ := newTestManager(t, h, Options{})
	var wg sync.WaitGroup
	errs := make([]error, 9)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Allocate(context.Background(), Request{Session: fmt.Sprintf("s%d", i), Count: 1})
		}()
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			if !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("unexpected error %v", err)
			}
			failed++
		}
	}
	seen := map[string]string{}
	for _, a := range m.Allocations() {
		for _, u := range a.UUIDs {
			if other, dup := seen[u]; dup {
				t.Errorf("gpu %s given to %s and %s", u, other, a.Session)
			}
			seen[u] = a.Session
		}
	}
	if failed != 1 || len(seen) != 8 {
		t.Errorf("%d requests failed and %d GPUs are held; want 1 and 8", failed, len(seen))
	}
}

func TestManager_Restore(t *testing.T) {
	h := newFakeHost(t, 2, "580.159.04", 13000)
	m, _, _ := newTestManager(t, h, Options{})
	at := time.Date(2026, 1, 14, 3, 0, 0, 0, time.UTC)
	if err := m.Restore(Allocation{Session: "old", UUIDs: []string{h.UUID(1)}, Indices: []int{1}, At: at}); err != nil {
		t.Fatal(err)
	}
	if a, ok := m.Held("old"); !ok || !a.At.Equal(at) {
		t.Errorf("restored = %+v, %v; want the original time", a, ok)
	}
	if err := m.Restore(Allocation{Session: "other", UUIDs: []string{h.UUID(1)}}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("restoring a held GPU = %v; want conflict", err)
	}
	a, err := m.Allocate(context.Background(), Request{Session: "new", Count: 1})
	if err != nil || a.Indices[0] != 0 {
		t.Errorf("allocation after restore = %+v, %v; want GPU 0", a, err)
	}
}

func hintOf(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}
