package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap/zaptest"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/operation"
)

func TestOperationsOverTheAPI(t *testing.T) {
	s, sock, _ := startServer(t)
	gate := make(chan struct{})
	s.Handle("POST /v1/test/pull", func(w http.ResponseWriter, r *http.Request) error {
		return s.StartOperation(w, r, "test-pull", r.URL.Query().Get("key"), func(ctx context.Context, report func(string, any)) (any, error) {
			report("layer-1", map[string]int{"completed": 1})
			if r.URL.Query().Get("key") == "forever" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			report("layer-1", map[string]int{"completed": 2})
			if r.URL.Query().Get("fail") != "" {
				return nil, errors.New("registry said no")
			}
			return map[string]string{"digest": "sha256:abc"}, nil
		})
	})
	c, _ := api.NewClient("unix://" + sock)
	ctx := context.Background()

	// A client that disconnects does not cancel the operation.
	cctx, cancel := context.WithCancel(ctx)
	_, err := c.StreamOperation(cctx, "POST", "/v1/test/pull?key=a", nil, func(key string, ev json.RawMessage) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("disconnect: %v", err)
	}
	ops, err := c.Operations(ctx)
	if err != nil || len(ops) != 1 || ops[0].State != api.OperationRunning || ops[0].Kind != "test-pull" {
		t.Fatalf("operations after disconnect: %+v %v", ops, err)
	}
	id := ops[0].ID

	// Starting the same key again joins it; watching by id replays the latest event.
	var seen []string
	done := make(chan *api.OperationEvent, 1)
	go func() {
		final, err := c.WatchOperation(ctx, id, func(key string, ev json.RawMessage) error {
			seen = append(seen, key+":"+string(ev))
			if len(seen) == 1 {
				close(gate)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		done <- final
	}()
	select {
	case final := <-done:
		if final.State != api.OperationSucceeded || string(final.Result) != `{"digest":"sha256:abc"}` || final.Op != id {
			t.Errorf("final %+v", final)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end")
	}
	if len(seen) != 2 || seen[0] != `layer-1:{"completed":1}` || seen[1] != `layer-1:{"completed":2}` {
		t.Errorf("events %v", seen)
	}

	// A failing operation ends the stream with an error line.
	_, err = c.StreamOperation(ctx, "POST", "/v1/test/pull?key=b&fail=1", nil, nil)
	if err == nil || err.Error() != "registry said no" {
		t.Errorf("failed operation: %v", err)
	}

	// Detached start, then cancel.
	var op api.Operation
	if err := c.Do(ctx, "POST", "/v1/test/pull?key=forever&detach=true", nil, &op); err != nil || op.State != api.OperationRunning {
		t.Fatalf("detach: %+v %v", op, err)
	}
	if err := c.CancelOperation(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		got, err := c.Operation(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == api.OperationCanceled {
			if got.Error == nil || got.Error.Code != api.CodeCanceled || got.EndedAt == nil {
				t.Errorf("canceled operation %+v", got)
			}
			break
		}
		if i > 200 {
			t.Fatalf("still %s after cancel", got.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Operation(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown operation: %v", err)
	}
}

func TestOperationManagerPassedIn(t *testing.T) {
	m := operation.NewManager(context.Background(), zaptest.NewLogger(t))
	s, err := New(Options{Logger: zaptest.NewLogger(t), Operations: m})
	if err != nil {
		t.Fatal(err)
	}
	if s.ops != m {
		t.Error("server did not use the manager it was given")
	}
	m.Close()
}
