package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/internal/buildinfo"
	"github.com/sglangd/sglangd/pkg/api"
)

// versionOutput is the -o json/yaml shape of `sglangctl version`.
type versionOutput struct {
	Client api.BuildInfo        `json:"client"`
	Daemon *api.VersionResponse `json:"daemon,omitempty"`
	// DaemonError says why the daemon part is missing.
	DaemonError string `json:"daemon_error,omitempty"`
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print client and daemon versions",
		Long:  "Print the versions of sglangctl and of the daemon it reaches. The client part is printed even when the daemon cannot be reached (then the exit code is 1).",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := versionOutput{Client: buildinfo.Get()}
			c, err := g.client()
			if err != nil {
				return err
			}
			v, derr := c.Version(cmd.Context())
			if derr != nil {
				out.DaemonError = derr.Error()
			}
			out.Daemon = v
			if err := g.print(out, func(w io.Writer) error {
				fmt.Fprintf(w, "Client:\t%s\t(commit %s, %s)\n", out.Client.Version, short(out.Client.Commit), out.Client.GoVersion)
				if v != nil {
					fmt.Fprintf(w, "Daemon:\t%s\t(commit %s, %s, api %s)\n", v.Daemon.Version, short(v.Daemon.Commit), v.Daemon.GoVersion, v.APIVersion)
					fmt.Fprintf(w, "Daemon ID:\t%s\t(%d starts, data %s)\n", v.DaemonID, v.Starts, v.DataDir)
				}
				return nil
			}); err != nil {
				return err
			}
			return derr
		},
	}
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	if commit == "" {
		return "unknown"
	}
	return commit
}
