package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/operation"
)

// Models is the model cache behind /v1/models.
type Models interface {
	// Pull checks req and pins its revision (under the request's ctx) and
	// returns the operation that downloads it: its key (equal keys share
	// one download) and body, which reports an api.ModelPullEvent under
	// key "" and an api.ModelFileProgress per file under "file/<path>", and
	// returns the api.ModelSnapshot.
	Pull(ctx context.Context, req api.ModelPullRequest) (key string, fn operation.Func, err error)
	List(ctx context.Context) (*api.ModelList, error)
	Remove(ctx context.Context, repo, revision string) error
	Verify(ctx context.Context, req api.ModelVerifyRequest) (*api.ModelVerifyReport, error)
}

func (s *Server) modelRoutes() {
	if s.opts.Models == nil {
		return
	}
	s.handle("POST /v1/models/pull", s.pullModel)
	s.handle("GET /v1/models", s.listModels)
	s.handle("POST /v1/models/verify", s.verifyModel)
	s.handle("DELETE /v1/models/{repo...}", s.removeModel)
}

func checkRepo(repo string) error {
	if repo == "" || strings.Count(repo, "/") > 1 || strings.HasPrefix(repo, "/") {
		return fmt.Errorf("repo %q: %w: expected a Hugging Face model id such as Qwen/Qwen2.5-7B-Instruct", repo, errdefs.ErrInvalidArgument)
	}
	return nil
}

// pullModel starts or joins the download as an operation and streams its
// progress (api.OperationEvent lines). Errors found before the download
// starts (bad repo, gated, unknown revision) get their HTTP status.
func (s *Server) pullModel(w http.ResponseWriter, r *http.Request) error {
	var req api.ModelPullRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkRepo(req.Repo); err != nil {
		return err
	}
	key, fn, err := s.opts.Models.Pull(r.Context(), req)
	if err != nil {
		return err
	}
	return s.StartOperation(w, r, api.ModelPullKind, key, fn)
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) error {
	l, err := s.opts.Models.List(r.Context())
	if err != nil {
		return err
	}
	if l.Models == nil {
		l.Models = []api.ModelSnapshot{}
	}
	return writeJSON(w, http.StatusOK, l)
}

func (s *Server) verifyModel(w http.ResponseWriter, r *http.Request) error {
	var req api.ModelVerifyRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkRepo(req.Repo); err != nil {
		return err
	}
	rep, err := s.opts.Models.Verify(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *Server) removeModel(w http.ResponseWriter, r *http.Request) error {
	repo := r.PathValue("repo")
	if err := checkRepo(repo); err != nil {
		return err
	}
	if err := s.opts.Models.Remove(r.Context(), repo, r.URL.Query().Get("revision")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
