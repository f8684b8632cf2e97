package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
)

// Models is the model cache behind /v1/models. Pull must run the download
// under the daemon's lifetime: when ctx (the request's) ends, Pull returns
// and the download goes on.
type Models interface {
	Pull(ctx context.Context, req api.ModelPullRequest, fn func(api.ModelPullEvent)) (*api.ModelSnapshot, error)
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

// pullModel streams progress as NDJSON. Errors before the first event get
// their HTTP status; later ones end the stream.
func (s *Server) pullModel(w http.ResponseWriter, r *http.Request) error {
	var req api.ModelPullRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkRepo(req.Repo); err != nil {
		return err
	}
	return Stream(w, r, func(send func(v any) error) error {
		var sendErr error
		var last api.ModelPullEvent
		snap, err := s.opts.Models.Pull(r.Context(), req, func(ev api.ModelPullEvent) {
			last = ev
			if sendErr == nil {
				sendErr = send(ev)
			}
		})
		if err != nil {
			return err
		}
		if sendErr != nil {
			return sendErr
		}
		last.Phase, last.Snapshot, last.Active = api.ModelPhaseDone, snap, nil
		if last.Repo == "" {
			last.Repo, last.Commit = snap.Repo, snap.Commit
		}
		return send(last)
	})
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
