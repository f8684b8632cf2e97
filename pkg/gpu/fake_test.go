package gpu

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sglangd/sglangd/pkg/gpu/gputest"
)

func newFakeHost(t *testing.T, n int, driver string, cuda int) *gputest.Host {
	t.Helper()
	return gputest.NewHost(n, driver, cuda)
}

// fakeClock is a settable clock for allocation and sample times.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTestManager returns a manager over the fake host with its own
// registry and clock.
func newTestManager(t *testing.T, h *gputest.Host, opts Options) (*Manager, *prometheus.Registry, *fakeClock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	clk := &fakeClock{now: time.Date(2026, 1, 15, 3, 0, 0, 0, time.UTC)}
	opts.NVML = h.NVML()
	opts.Registerer = reg
	opts.Now = clk.Now
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, reg, clk
}
