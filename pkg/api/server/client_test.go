package server_test

import (
	"net/http/httptest"
	"testing"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
)

// newTestClient serves a server built from opts on a loopback httptest
// server and returns a client for it. Backends left nil answer
// not_implemented, as on a daemon without that feature.
func newTestClient(t *testing.T, opts server.Options) *api.Client {
	t.Helper()
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler(false))
	t.Cleanup(hs.Close)
	c, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
