package api

import (
	"github.com/sglangd/sglangd/internal/hint"

	"context"
	"errors"
	"net/http"

	"github.com/containerd/errdefs"
)

// Error codes carried in {"error":{"code":...}}. Each maps to one errdefs
// class, so errors.Is(err, errdefs.ErrNotFound) works on both sides of the
// wire.
const (
	CodeInvalidArgument    = "invalid_argument"
	CodeNotFound           = "not_found"
	CodeAlreadyExists      = "already_exists"
	CodeConflict           = "conflict"
	CodeFailedPrecondition = "failed_precondition"
	CodeUnavailable        = "unavailable"
	CodeUnauthenticated    = "unauthenticated"
	CodePermissionDenied   = "permission_denied"
	CodeResourceExhausted  = "resource_exhausted"
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeCanceled           = "canceled"
	CodeNotImplemented     = "not_implemented"
	CodeInternal           = "internal"
	// CodeMethodNotAllowed answers a known path called with the wrong method.
	CodeMethodNotAllowed = "method_not_allowed"
)

// codeTable maps codes to their error class and HTTP status. Order matters
// for FromError: the first class an error matches wins.
var codeTable = []struct {
	code   string
	class  error
	status int
}{
	{CodeInvalidArgument, errdefs.ErrInvalidArgument, http.StatusBadRequest},
	{CodeNotFound, errdefs.ErrNotFound, http.StatusNotFound},
	{CodeAlreadyExists, errdefs.ErrAlreadyExists, http.StatusConflict},
	{CodeConflict, errdefs.ErrConflict, http.StatusConflict},
	{CodeFailedPrecondition, errdefs.ErrFailedPrecondition, http.StatusPreconditionFailed},
	{CodeUnavailable, errdefs.ErrUnavailable, http.StatusServiceUnavailable},
	{CodeUnauthenticated, errdefs.ErrUnauthenticated, http.StatusUnauthorized},
	{CodePermissionDenied, errdefs.ErrPermissionDenied, http.StatusForbidden},
	{CodeResourceExhausted, errdefs.ErrResourceExhausted, http.StatusTooManyRequests},
	{CodeDeadlineExceeded, context.DeadlineExceeded, http.StatusGatewayTimeout},
	{CodeCanceled, context.Canceled, 499},
	{CodeInternal, errdefs.ErrInternal, http.StatusInternalServerError},
	{CodeNotImplemented, errdefs.ErrNotImplemented, http.StatusNotImplemented},
}

// Error is the API's error body and the error the client returns for any
// non-2xx answer. Unwrap yields the errdefs class of Code.
type Error struct {
	// Status is the HTTP status the error came with (client side) or will be
	// sent with (server side). It is not part of the JSON body.
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// ErrorBody is the JSON envelope of an error: {"error":{...}}.
type ErrorBody struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Unwrap returns the errdefs class of the error's code.
func (e *Error) Unwrap() error {
	for _, c := range codeTable {
		if c.code == e.Code {
			return c.class
		}
	}
	return errdefs.ErrUnknown
}

// Hinter is implemented by errors that know what the user should do next.
// The server copies the hint into the error body; the CLI prints it.
type Hinter = hint.Hinter

// WithHint returns err annotated with a hint for the user.
func WithHint(err error, format string, args ...any) error { return hint.Withf(err, format, args...) }

// HintOf returns the first hint found in err's chain, or "". An *Error
// decoded from the daemon carries its hint as a field, not a method, so it
// is looked for too.
func HintOf(err error) string {
	if h := hint.Of(err); h != "" {
		return h
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}

// FromError converts any error into the API's error shape, classifying it
// by its errdefs class or context error. Unclassified errors become
// internal errors with status 500.
func FromError(err error) *Error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		out := *apiErr
		if out.Status == 0 {
			out.Status = statusOf(out.Code)
		}
		return &out
	}
	e := &Error{Code: CodeInternal, Status: http.StatusInternalServerError, Message: err.Error(), Hint: HintOf(err)}
	for _, c := range codeTable {
		if errors.Is(err, c.class) {
			e.Code, e.Status = c.code, c.status
			return e
		}
	}
	return e
}

func statusOf(code string) int {
	for _, c := range codeTable {
		if c.code == code {
			return c.status
		}
	}
	return http.StatusInternalServerError
}
