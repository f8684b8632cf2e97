package server

import (
	"encoding/json"
	"net/http"

	"github.com/sglangd/sglangd/pkg/api"
)

// Stream answers with NDJSON: fn sends events, each written as one line and
// flushed at once. If fn fails before anything was sent the error gets its
// proper status; after that the status is already 200, so the error is the
// stream's last line, shaped {"error":{...}}.
func Stream(w http.ResponseWriter, r *http.Request, fn func(send func(v any) error) error) error {
	wrote := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(v any) error {
		if !wrote {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			wrote = true
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return r.Context().Err()
	}
	err := fn(send)
	if err == nil {
		if !wrote {
			w.WriteHeader(http.StatusNoContent)
		}
		return nil
	}
	if !wrote {
		return err
	}
	_ = enc.Encode(api.ErrorBody{Error: api.FromError(err)})
	if flusher != nil {
		flusher.Flush()
	}
	return nil
}
