package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ModelPullRequest is the body of POST /v1/models/pull.
type ModelPullRequest struct {
	// Repo is the Hugging Face model id, org/name.
	Repo string `json:"repo"`
	// Revision is a branch, tag or commit; default "main".
	Revision string `json:"revision,omitempty"`
	// Include and Exclude are fnmatch globs over repository paths; omitted
	// means the daemon's model.include / model.exclude.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// Model pull phases.
const (
	ModelPhaseResolving   = "resolving"
	ModelPhaseListing     = "listing"
	ModelPhaseDownloading = "downloading"
	ModelPhaseDone        = "done"
)

// Model file states.
const (
	ModelFileQueued      = "queued"
	ModelFileDownloading = "downloading"
	ModelFileVerifying   = "verifying"
	ModelFileDone        = "done"
	ModelFileCached      = "cached"
	ModelFileFailed      = "failed"
)

// ModelPullKind is the operation kind of model pulls.
const ModelPullKind = "model.pull"

// Keys of a pull's progress events (api.OperationEvent.Key): the overall
// state, and one key per file.
const (
	ModelPullOverallKey = ""
	ModelPullFilePrefix = "file/"
)

// ModelPullEvent is the overall state of a pull, the event under key "" of
// the pull's operation stream (POST /v1/models/pull). The download runs in
// the daemon as an operation: a client that disconnects does not stop it,
// and a client that asks for the same repo, commit and files attaches to
// it. Each file's state comes under the key "file/<path>" as a
// ModelFileProgress; the final line carries the ModelSnapshot as result.
type ModelPullEvent struct {
	Phase    string `json:"phase"`
	Repo     string `json:"repo"`
	Revision string `json:"revision,omitempty"`
	Commit   string `json:"commit,omitempty"`
	// Files is the number of selected files, FilesDone those in place.
	Files     int `json:"files"`
	FilesDone int `json:"files_done"`
	// TotalBytes of the selected files; CompletedBytes on disk (cached,
	// resumed or downloaded); DownloadedBytes received by this pull.
	TotalBytes      int64   `json:"total_bytes"`
	CompletedBytes  int64   `json:"completed_bytes"`
	DownloadedBytes int64   `json:"downloaded_bytes"`
	BytesPerSecond  float64 `json:"bytes_per_second"`
	ETASeconds      float64 `json:"eta_seconds,omitempty"`
	ElapsedSeconds  float64 `json:"elapsed_seconds"`
}

// ModelPullUpdate is one decoded event of a pull stream: Overall or File.
type ModelPullUpdate struct {
	// Op is the pull's operation id (sglangctl operation watch ID).
	Op      string
	Overall *ModelPullEvent
	File    *ModelFileProgress
}

// ModelFileProgress is the state of one file in a pull.
type ModelFileProgress struct {
	Path           string  `json:"path"`
	SizeBytes      int64   `json:"size_bytes"`
	CompletedBytes int64   `json:"completed_bytes"`
	BytesPerSecond float64 `json:"bytes_per_second,omitempty"`
	ETASeconds     float64 `json:"eta_seconds,omitempty"`
	State          string  `json:"state"`
	Retries        int     `json:"retries,omitempty"`
}

// ModelSnapshot is one downloaded commit of a model.
type ModelSnapshot struct {
	Repo   string `json:"repo"`
	Commit string `json:"commit"`
	// Revisions are the branches and tags that point at Commit.
	Revisions []string `json:"revisions,omitempty"`
	// Path is the snapshot directory, SGLang's --model-path.
	Path      string `json:"path"`
	Files     int    `json:"files"`
	SizeBytes int64  `json:"size_bytes"`
	// Verified is true when sglangd hashed every file and none changed.
	Verified   bool       `json:"verified"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Models []ModelSnapshot `json:"models"`
	// Pulls are the downloads running now: their latest overall event.
	Pulls []ModelPullEvent `json:"pulls,omitempty"`
}

// ModelVerifyRequest is the body of POST /v1/models/verify.
type ModelVerifyRequest struct {
	Repo string `json:"repo"`
	// Revision is a commit or a ref pulled before; empty means main or the
	// only snapshot.
	Revision string `json:"revision,omitempty"`
}

// ModelVerifyReport is the answer of POST /v1/models/verify.
type ModelVerifyReport struct {
	Repo   string `json:"repo"`
	Commit string `json:"commit"`
	Path   string `json:"path"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	OK     bool   `json:"ok"`
	// Problems lists defects; corrupt files were removed from the
	// snapshot so SGLang cannot read them, and a pull fetches them again.
	Problems []ModelProblem `json:"problems,omitempty"`
}

// ModelProblem is one defect found by verify.
type ModelProblem struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

// PullModel starts (or joins) the daemon's download of a model, calls fn
// (may be nil) with each progress event, and returns the snapshot.
// Cancelling ctx detaches from the download; the daemon finishes it, and
// the operation id seen in the updates can be watched again.
func (c *Client) PullModel(ctx context.Context, req ModelPullRequest, fn func(ModelPullUpdate)) (*ModelSnapshot, error) {
	var final *OperationEvent
	err := c.Stream(ctx, http.MethodPost, "/v1/models/pull", req, func(line json.RawMessage) error {
		var ev OperationEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("model pull: bad stream line: %w", err)
		}
		if ev.State != "" {
			final = &ev
			return nil
		}
		u := ModelPullUpdate{Op: ev.Op}
		if file, ok := strings.CutPrefix(ev.Key, ModelPullFilePrefix); ok {
			u.File = &ModelFileProgress{}
			if err := json.Unmarshal(ev.Event, u.File); err != nil {
				return fmt.Errorf("model pull: bad event for %s: %w", file, err)
			}
		} else {
			u.Overall = &ModelPullEvent{}
			if err := json.Unmarshal(ev.Event, u.Overall); err != nil {
				return fmt.Errorf("model pull: bad event: %w", err)
			}
		}
		if fn != nil {
			fn(u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if final == nil {
		return nil, fmt.Errorf("model pull %s: the stream ended without a result (did the daemon stop?); pull again to resume", req.Repo)
	}
	if final.State != OperationSucceeded {
		return nil, fmt.Errorf("model pull %s: operation %s ended %s", req.Repo, final.Op, final.State)
	}
	var snap ModelSnapshot
	if err := json.Unmarshal(final.Result, &snap); err != nil {
		return nil, fmt.Errorf("model pull %s: bad result: %w", req.Repo, err)
	}
	return &snap, nil
}

// ListModels lists the models in the daemon's cache and running pulls.
func (c *Client) ListModels(ctx context.Context) (*ModelList, error) {
	var l ModelList
	if err := c.Do(ctx, http.MethodGet, "/v1/models", nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// RemoveModel deletes a model from the cache: one commit's snapshot when
// revision is set, else the whole repo.
func (c *Client) RemoveModel(ctx context.Context, repo, revision string) error {
	p := "/v1/models/" + repo
	if revision != "" {
		p += "?revision=" + url.QueryEscape(revision)
	}
	return c.Do(ctx, http.MethodDelete, p, nil, nil)
}

// VerifyModel re-hashes a snapshot's files.
func (c *Client) VerifyModel(ctx context.Context, req ModelVerifyRequest) (*ModelVerifyReport, error) {
	var r ModelVerifyReport
	if err := c.Do(ctx, http.MethodPost, "/v1/models/verify", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
