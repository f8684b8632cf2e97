package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// OperationHeader carries the id of the operation a streaming response
// belongs to, so a client can reattach with WatchOperation.
const OperationHeader = "Sglangd-Operation-Id"

// Operation states.
const (
	OperationRunning   = "running"
	OperationSucceeded = "succeeded"
	OperationFailed    = "failed"
	OperationCanceled  = "canceled"
)

// Operation is a long-running job of the daemon (a pull, a session).
type Operation struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Key       string          `json:"key"`
	State     string          `json:"state"`
	StartedAt time.Time       `json:"started_at"`
	EndedAt   *time.Time      `json:"ended_at,omitempty"`
	Error     *Error          `json:"error,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// OperationEvent is one line of an operation's NDJSON stream: a progress
// event (Key, Event), or the final line (State, Result). A failure ends
// the stream with an error line instead.
type OperationEvent struct {
	Op     string          `json:"op"`
	Key    string          `json:"key,omitempty"`
	Event  json.RawMessage `json:"event,omitempty"`
	State  string          `json:"state,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// StreamOperation sends a request that starts (or joins) an operation and
// calls fn with each progress event's key and payload until the operation
// ends. It returns the final line. Disconnecting (ctx) does not cancel the
// operation on the daemon; CancelOperation does.
func (c *Client) StreamOperation(ctx context.Context, method, path string, in any, fn func(key string, event json.RawMessage) error) (*OperationEvent, error) {
	var final *OperationEvent
	err := c.Stream(ctx, method, path, in, func(line json.RawMessage) error {
		var ev OperationEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("%s %s: bad stream line: %w", method, path, err)
		}
		if ev.State != "" {
			final = &ev
			return nil
		}
		if fn == nil {
			return nil
		}
		return fn(ev.Key, ev.Event)
	})
	if err != nil {
		return nil, err
	}
	if final == nil {
		return nil, fmt.Errorf("%s %s: stream ended without a final state (daemon stopped?)", method, path)
	}
	return final, nil
}

// Operations lists running and recently finished operations.
func (c *Client) Operations(ctx context.Context) ([]Operation, error) {
	var out []Operation
	err := c.Do(ctx, http.MethodGet, "/v1/operations", nil, &out)
	return out, err
}

// Operation returns one operation's state.
func (c *Client) Operation(ctx context.Context, id string) (*Operation, error) {
	var out Operation
	if err := c.Do(ctx, http.MethodGet, "/v1/operations/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WatchOperation attaches to an operation: first the latest state of each
// key, then live events, until it ends.
func (c *Client) WatchOperation(ctx context.Context, id string, fn func(key string, event json.RawMessage) error) (*OperationEvent, error) {
	return c.StreamOperation(ctx, http.MethodGet, "/v1/operations/"+url.PathEscape(id)+"/events", nil, fn)
}

// CancelOperation asks the daemon to stop an operation.
func (c *Client) CancelOperation(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/operations/"+url.PathEscape(id), nil, nil)
}
