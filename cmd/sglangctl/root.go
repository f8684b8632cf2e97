package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/internal/buildinfo"
	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/api"
)

// globals are the flags every subcommand shares and the helpers built on
// them: the API client and -o output.
type globals struct {
	host   string
	token  string
	output string
	caFile string
	stdout io.Writer
	stderr io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "sglangctl",
		Short: "Control sglangd: profile SGLang servers on GPU hosts",
		Long: `sglangctl talks to the sglangd daemon over its API.

The daemon is found at --host, or SGLANGD_HOST, or ` + api.DefaultHost + `.
TCP hosts (https://host:port) need --token or SGLANGD_TOKEN.

Exit codes: 0 success, 1 failure, 2 usage error.`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch g.output {
			case "table", "json", "yaml":
				return nil
			}
			return cliutil.Usagef("-o/--output must be table, json or yaml, got %q", g.output)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.host, "host", envOr("SGLANGD_HOST", api.DefaultHost), "daemon address: unix:///path or https://host:port (env SGLANGD_HOST)")
	pf.StringVar(&g.token, "token", "", "bearer token for TCP hosts (env SGLANGD_TOKEN)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	pf.StringVar(&g.caFile, "tls-ca", "", "PEM CA certificate to trust for https hosts")
	root.AddCommand(newVersionCmd(g), newDoctorCmd(g), newOperationCmd(g), newGPUCmd(g), newImageCmd(g), newTraceCmd(g), newModelCmd(g))
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client builds the API client from the global flags.
func (g *globals) client() (*api.Client, error) {
	token := g.token
	if token == "" {
		token = os.Getenv("SGLANGD_TOKEN")
	}
	opts := []api.ClientOption{api.WithToken(token)}
	if g.caFile != "" {
		pem, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, cliutil.Usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, cliutil.Usagef("--tls-ca %s: no PEM certificate found", g.caFile)
		}
		opts = append(opts, api.WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	c, err := api.NewClient(g.host, opts...)
	if err != nil {
		return nil, &cliutil.UsageError{Err: fmt.Errorf("--host: %w", err)}
	}
	return c, nil
}

// print writes v as JSON or YAML, or calls table with a tabwriter.
func (g *globals) print(v any, table func(w io.Writer) error) error {
	switch g.output {
	case "json":
		return cliutil.PrintJSON(g.stdout, v)
	case "yaml":
		return cliutil.PrintYAML(g.stdout, v)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if err := table(tw); err != nil {
		return err
	}
	return tw.Flush()
}

// warnVersion tells the user when client and daemon versions differ,
// which is when API surprises happen.
func (g *globals) warnVersion(c *api.Client) {
	if dv, cv := c.DaemonVersion(), buildinfo.Get().Version; dv != "" && dv != cv {
		fmt.Fprintf(g.stderr, "Warning: sglangctl %s talks to sglangd %s; upgrade one of them if commands misbehave\n", cv, dv)
	}
}
