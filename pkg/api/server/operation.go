package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/operation"
)

func (s *Server) operationRoutes() {
	s.handle("GET /v1/operations", func(w http.ResponseWriter, r *http.Request) error {
		infos := s.ops.List()
		out := make([]api.Operation, len(infos))
		for i, info := range infos {
			out[i] = toAPIOperation(info)
		}
		return writeJSON(w, http.StatusOK, out)
	})
	s.handle("GET /v1/operations/{id}", func(w http.ResponseWriter, r *http.Request) error {
		op, err := s.ops.Get(r.PathValue("id"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, toAPIOperation(op.Info()))
	})
	s.handle("GET /v1/operations/{id}/events", func(w http.ResponseWriter, r *http.Request) error {
		op, err := s.ops.Get(r.PathValue("id"))
		if err != nil {
			return err
		}
		return s.watchOperation(w, r, op)
	})
	s.handle("DELETE /v1/operations/{id}", func(w http.ResponseWriter, r *http.Request) error {
		op, err := s.ops.Get(r.PathValue("id"))
		if err != nil {
			return err
		}
		op.Cancel()
		w.WriteHeader(http.StatusAccepted)
		return nil
	})
}

// StartOperation starts (or joins) an operation of kind and key and
// streams its progress to the client as api.OperationEvent lines. The
// operation runs under the daemon's context: if the client goes away, it
// continues and can be watched again by id. With ?detach=true the answer
// is 202 with the operation's state instead of a stream.
func (s *Server) StartOperation(w http.ResponseWriter, r *http.Request, kind, key string, fn operation.Func) error {
	op, _ := s.ops.Start(kind, key, fn)
	w.Header().Set(api.OperationHeader, op.ID())
	if r.URL.Query().Get("detach") == "true" {
		return writeJSON(w, http.StatusAccepted, toAPIOperation(op.Info()))
	}
	return s.watchOperation(w, r, op)
}

func (s *Server) watchOperation(w http.ResponseWriter, r *http.Request, op *operation.Op) error {
	id := op.ID()
	w.Header().Set(api.OperationHeader, id)
	return Stream(w, r, func(send func(any) error) error {
		err := op.Watch(r.Context(), func(ev operation.Event) error {
			b, err := json.Marshal(ev.Value)
			if err != nil {
				return fmt.Errorf("operation %s: encode event: %w", id, err)
			}
			return send(api.OperationEvent{Op: id, Key: ev.Key, Event: b})
		})
		if err != nil {
			return err
		}
		info := op.Info()
		final := api.OperationEvent{Op: id, State: string(info.State)}
		if info.Result != nil {
			b, err := json.Marshal(info.Result)
			if err != nil {
				return fmt.Errorf("operation %s: encode result: %w", id, err)
			}
			final.Result = b
		}
		return send(final)
	})
}

func toAPIOperation(info operation.Info) api.Operation {
	out := api.Operation{ID: info.ID, Kind: info.Kind, Key: info.Key, State: string(info.State), StartedAt: info.Started}
	if !info.Ended.IsZero() {
		t := info.Ended
		out.EndedAt = &t
	}
	if info.Err != nil {
		out.Error = api.FromError(info.Err)
	}
	if info.Result != nil {
		if b, err := json.Marshal(info.Result); err == nil {
			out.Result = b
		}
	}
	return out
}
