// Package hint attaches advice for the user ("set gpu.mode: none", "pass
// --token") to errors without changing their message or class. The API
// server copies a hint into the error body and sglangctl prints it, so
// every package can give advice without importing the API.
package hint

import (
	"errors"
	"fmt"
)

// Hinter is implemented by errors that know what the user should do next.
type Hinter interface {
	Hint() string
}

type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }
func (h *hinted) Hint() string  { return h.hint }

// With returns err annotated with hint; a nil err stays nil.
func With(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &hinted{err: err, hint: hint}
}

// Withf is With with a formatted hint.
func Withf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return With(err, fmt.Sprintf(format, args...))
}

// Of returns the first hint in err's chain, or "".
func Of(err error) string {
	var h Hinter
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}
