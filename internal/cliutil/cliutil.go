// Package cliutil holds what sglangd's two command lines share: exit codes
// (0 ok, 1 failure, 2 usage error) and how errors and hints are printed.
package cliutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/pkg/api"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError marks a mistake in how the command was called.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a usage error.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// cobra reports its own argument and flag mistakes as plain errors; these
// are their message prefixes.
var cobraUsagePrefixes = []string{"unknown command", "unknown flag", "unknown shorthand flag",
	"accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"}

// IsUsage reports whether err is a usage mistake.
func IsUsage(err error) bool {
	var u *UsageError
	if errors.As(err, &u) {
		return true
	}
	msg := err.Error()
	for _, p := range cobraUsagePrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Execute runs root with args and returns the process exit code, printing
// "Error: ..." and any "Hint: ..." to stderr.
func Execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) int {
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &UsageError{Err: err} })
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if h := api.HintOf(err); h != "" {
		fmt.Fprintf(stderr, "Hint: %s\n", h)
	}
	if IsUsage(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", root.CommandPath())
		return ExitUsage
	}
	return ExitFailure
}

// ExitError ends the command with a code and no further message (the
// command already printed its result, e.g. a failed doctor report).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }
