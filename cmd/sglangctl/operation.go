package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/pkg/api"
)

func newOperationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "operation",
		Aliases: []string{"op"},
		Short:   "List, watch and cancel the daemon's long operations (pulls, sessions)",
		Long: `Long operations (model and image pulls, profiling sessions) run in the
daemon, detached from the command that started them: interrupting sglangctl
does not stop them. Use these commands to find them again, watch their
progress, or cancel them.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List running and recently finished operations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ops, err := c.Operations(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(ops, func(w io.Writer) error {
				fmt.Fprintln(w, "ID\tKIND\tKEY\tSTATE\tSTARTED\tTOOK\tERROR")
				for _, op := range ops {
					took := "-"
					if op.EndedAt != nil {
						took = op.EndedAt.Sub(op.StartedAt).Round(time.Millisecond).String()
					}
					msg := ""
					if op.Error != nil {
						msg = op.Error.Message
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", op.ID, op.Kind, op.Key, op.State,
						op.StartedAt.Local().Format(time.DateTime), took, msg)
				}
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "watch ID",
		Short: "Follow an operation's progress until it ends (JSON lines)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			final, err := c.WatchOperation(cmd.Context(), args[0], func(key string, ev json.RawMessage) error {
				return enc.Encode(api.OperationEvent{Op: args[0], Key: key, Event: ev})
			})
			if err != nil {
				return err
			}
			return enc.Encode(final)
		},
	}, &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running operation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.CancelOperation(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "cancel requested for %s\n", args[0])
			return err
		},
	})
	return cmd
}
