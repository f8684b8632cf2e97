package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// OperationImagePull is the operation kind of POST /v1/images/pull; its
// key is the normalised image reference.
const OperationImagePull = "image_pull"

// Image pull policies.
const (
	PullIfMissing = "if-missing"
	PullAlways    = "always"
	PullNever     = "never"
)

// ImagePullRequest is the body of POST /v1/images/pull.
type ImagePullRequest struct {
	// Ref is the image; empty means the configured docker.image.
	Ref string `json:"ref,omitempty"`
	// Policy is if-missing, always or never; empty means always (an
	// explicit pull asks the registry).
	Policy string `json:"policy,omitempty"`
}

// ImagePullEvent is one progress event of an image pull, in the engine's
// words: per layer "Pulling fs layer", "Waiting", "Downloading" and
// "Extracting" (with byte counts), "Verifying Checksum", "Download
// complete", "Pull complete" or "Already exists"; without Layer, image
// level lines such as "Digest: sha256:..." and "Status: ...". The
// operation's event key is the layer.
type ImagePullEvent struct {
	Layer   string `json:"layer,omitempty"`
	Status  string `json:"status"`
	Current int64  `json:"current,omitempty"`
	Total   int64  `json:"total,omitempty"`
}

// Image describes a local image: the result of a pull, and what a session
// records about its server image.
type Image struct {
	Ref        string `json:"ref"`
	ID         string `json:"id"`
	Digest     string `json:"digest,omitempty"`
	RepoDigest string `json:"repo_digest,omitempty"`
	Created    string `json:"created,omitempty"`
	Size       int64  `json:"size"`
	OS         string `json:"os,omitempty"`
	Arch       string `json:"arch,omitempty"`
	// CUDAVersion and SGLangVersion come from the image's labels or env
	// when present.
	CUDAVersion   string            `json:"cuda_version,omitempty"`
	SGLangVersion string            `json:"sglang_version,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	// Pulled is true when this pull downloaded it (false: already there).
	Pulled bool `json:"pulled"`
	// CredentialSource says which credentials the pull sent:
	// ngc_api_key, docker_config or none.
	CredentialSource string `json:"credential_source,omitempty"`
}

// ImageList is the body of GET /v1/images: the configured image and the
// local images of its repository.
type ImageList struct {
	// Configured is docker.image.
	Configured string `json:"configured"`
	// Present is whether the configured image is local.
	Present bool    `json:"present"`
	Images  []Image `json:"images"`
}

// PullImage pulls an image through the daemon, calling fn with each
// progress event until it ends. The pull runs in the daemon as an
// operation: interrupting the caller does not stop it.
func (c *Client) PullImage(ctx context.Context, req ImagePullRequest, fn func(ImagePullEvent) error) (*Image, error) {
	final, err := c.StreamOperation(ctx, http.MethodPost, "/v1/images/pull", req, func(_ string, raw json.RawMessage) error {
		if fn == nil {
			return nil
		}
		var ev ImagePullEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("image pull: bad progress event: %w", err)
		}
		return fn(ev)
	})
	if err != nil {
		return nil, err
	}
	var img Image
	if err := json.Unmarshal(final.Result, &img); err != nil {
		return nil, fmt.Errorf("image pull: bad result: %w", err)
	}
	return &img, nil
}

// Images lists the configured image and its repository's local images.
func (c *Client) Images(ctx context.Context) (*ImageList, error) {
	var l ImageList
	if err := c.Do(ctx, http.MethodGet, "/v1/images", nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
