package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/api"
)

func newDoctorCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that the daemon and everything it needs work",
		Long: `Ask the daemon to check itself and what it depends on: its state database,
data directory and, as features are enabled, GPUs and driver, the Docker
engine, registry credentials and the model cache. Exit code 1 if any check
failed; warnings do not fail.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rep, err := c.Doctor(cmd.Context())
			if err != nil {
				return err
			}
			g.warnVersion(c)
			if err := g.print(rep, func(w io.Writer) error {
				fmt.Fprintln(w, "CHECK\tSTATUS\tMESSAGE")
				for _, ch := range rep.Checks {
					fmt.Fprintf(w, "%s\t%s\t%s\n", ch.Name, strings.ToUpper(string(ch.Status)), ch.Message)
					if ch.Hint != "" && ch.Status != api.CheckOK {
						fmt.Fprintf(w, "\t\thint: %s\n", ch.Hint)
					}
				}
				return nil
			}); err != nil {
				return err
			}
			if !rep.OK {
				return &cliutil.ExitError{Code: cliutil.ExitFailure}
			}
			return nil
		},
	}
}
