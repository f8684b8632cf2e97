package model

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Sentinels to branch on with errors.Is. Every error returned by this
// package that matches one of them also matches an errdefs class, so the
// API server maps it to the right HTTP status.
var (
	// ErrGated: the repo is gated and the caller has no (approved) access.
	ErrGated = errors.New("gated repository")
	// ErrRepoNotFound: the repo does not exist, or is private and the
	// token (if any) cannot see it.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrRevisionNotFound: the branch, tag or commit does not exist.
	ErrRevisionNotFound = errors.New("revision not found")
	// ErrEntryNotFound: a file listed by the Hub is missing at resolve time.
	ErrEntryNotFound = errors.New("file not found in repository")
	// ErrBadToken: the Hub rejected the token itself.
	ErrBadToken = errors.New("invalid Hugging Face token")
	// ErrForbidden: the token is valid but lacks permission.
	ErrForbidden = errors.New("access forbidden")
	// ErrRateLimited: the Hub kept answering 429 after every retry.
	ErrRateLimited = errors.New("rate limited by the Hub")
	// ErrDisabled: the repo was disabled by its owner or the Hub.
	ErrDisabled = errors.New("repository disabled")
	// ErrNotHub: something that is not the Hub (a proxy, a captive portal,
	// a misconfigured mirror) answered.
	ErrNotHub = errors.New("endpoint is not a Hugging Face Hub")
	// ErrIntegrity: downloaded bytes do not hash to the expected digest.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrUnsafePath: the repo lists a file path that would land outside
	// the snapshot directory.
	ErrUnsafePath = errors.New("unsafe file path in repository")
	// ErrNoSpace: not enough free disk space for the missing bytes.
	ErrNoSpace = errors.New("not enough disk space")
	// ErrBusy: the repo is being downloaded, so it cannot be removed.
	ErrBusy = errors.New("repository is being downloaded")
)

// HubError is an error answer from the Hub or its CDN. It carries what a
// user (or a bug report) needs: the request, the Hub's own message and
// request id. It never contains the token.
type HubError struct {
	// Op is what was being done ("resolve revision", "list files", ...).
	Op       string
	Repo     string
	Revision string
	Path     string
	// Host answered the request.
	Host   string
	Status int
	// Code and Message are the X-Error-Code / X-Error-Message headers or
	// the JSON "error" field.
	Code      string
	Message   string
	RequestID string
	// RetryAfter is the wait the server asked for (429/503), if any.
	RetryAfter time.Duration

	kind  error // one of the sentinels above, or nil
	class error // errdefs class
	hint  string
}

func (e *HubError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Repo != "" {
		b.WriteString(" " + e.Repo)
		if e.Revision != "" {
			b.WriteString("@" + e.Revision)
		}
	}
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	what := http.StatusText(e.Status)
	if e.kind != nil {
		what = e.kind.Error()
	}
	fmt.Fprintf(&b, ": %s (HTTP %d from %s", what, e.Status, e.Host)
	if e.RequestID != "" {
		b.WriteString(", request id " + e.RequestID)
	}
	b.WriteString(")")
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Unwrap yields the sentinel and the errdefs class.
func (e *HubError) Unwrap() []error {
	var out []error
	if e.kind != nil {
		out = append(out, e.kind)
	}
	if e.class != nil {
		out = append(out, e.class)
	}
	return out
}

// Hint says what the user should do about the error.
func (e *HubError) Hint() string { return e.hint }

// hintedError attaches a class and hint to a local (non-HTTP) failure.
type hintedError struct {
	err   error
	class error
	hint  string
}

func (e *hintedError) Error() string   { return e.err.Error() }
func (e *hintedError) Unwrap() []error { return []error{e.err, e.class} }
func (e *hintedError) Hint() string    { return e.hint }

func withClass(err, class error, hint string) error {
	return &hintedError{err: err, class: class, hint: hint}
}

// classify fills kind, class and hint of a HubError from its status and
// error headers, following huggingface_hub's table (hf-hub-protocol §7).
func (e *HubError) classify(endpoint string, tokenSent bool) {
	repoURL := endpoint + "/" + e.Repo
	switch {
	case e.Code == "GatedRepo":
		e.kind = ErrGated
		if e.Status == http.StatusUnauthorized || !tokenSent {
			e.class = errdefs.ErrUnauthenticated
			e.hint = fmt.Sprintf("this model is gated: accept its terms at %s, then set a token with read access (HF_TOKEN or model.token_file)", repoURL)
		} else {
			e.class = errdefs.ErrPermissionDenied
			e.hint = fmt.Sprintf("your token has no access to this gated model yet: request access at %s and wait for approval", repoURL)
		}
	case strings.Contains(e.Message, "Access to this resource is disabled"):
		e.kind, e.class = ErrDisabled, errdefs.ErrFailedPrecondition
		e.hint = "the repository was disabled on the Hub; pick another model or mirror"
	case e.Code == "RevisionNotFound":
		e.kind, e.class = ErrRevisionNotFound, errdefs.ErrNotFound
		e.hint = fmt.Sprintf("check the branch, tag or commit; see %s/tree/main for the branches", repoURL)
	case e.Code == "EntryNotFound":
		e.kind, e.class = ErrEntryNotFound, errdefs.ErrNotFound
		e.hint = "the file listed by the Hub is gone; retry the pull, or pin a commit with --revision"
	case e.Status == http.StatusUnauthorized && strings.Contains(e.Message, "Invalid credentials"):
		e.kind, e.class = ErrBadToken, errdefs.ErrUnauthenticated
		e.hint = "the Hugging Face token is invalid or expired: create one at https://huggingface.co/settings/tokens and update HF_TOKEN or model.token_file"
	case e.Code == "RepoNotFound" || e.Status == http.StatusUnauthorized:
		e.kind, e.class = ErrRepoNotFound, errdefs.ErrNotFound
		if tokenSent {
			e.hint = "check the repo id (org/name, case matters); if it is private, make sure the token's owner can read it"
		} else {
			e.hint = "check the repo id (org/name, case matters); if it is private or gated, set a token with read access (HF_TOKEN or model.token_file)"
		}
	case e.Status == http.StatusNotFound:
		e.kind, e.class = ErrRepoNotFound, errdefs.ErrNotFound
		e.hint = "check the repo id and HF_ENDPOINT; a mirror may not carry this repository"
	case e.Status == http.StatusForbidden:
		e.kind, e.class = ErrForbidden, errdefs.ErrPermissionDenied
		e.hint = "the token lacks permission for this repository: use a token with read access"
	case e.Status == http.StatusTooManyRequests:
		e.kind, e.class = ErrRateLimited, errdefs.ErrResourceExhausted
		wait := "a few minutes"
		if e.RetryAfter > 0 {
			wait = e.RetryAfter.Round(time.Second).String()
		}
		e.hint = fmt.Sprintf("the Hub rate-limits requests; wait %s and pull again (a token raises the limits)", wait)
	case e.Status >= 500 || e.Status == http.StatusRequestTimeout:
		e.class = errdefs.ErrUnavailable
		e.hint = "the Hub or mirror is having trouble; pull again later (the download resumes) or set another HF_ENDPOINT"
	default:
		e.class = errdefs.ErrUnknown
	}
}

// isRetryableStatus reports the statuses huggingface_hub retries.
func isRetryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
