package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/internal/buildinfo"
	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/config"
)

// defaultConfigPath is read when --config is not given and the file exists.
const defaultConfigPath = "/etc/sglangd/sglangd.yaml"

type flags struct {
	config   string
	dataDir  string
	socket   string
	logLevel string
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var f flags
	root := &cobra.Command{
		Use:   "sglangd",
		Short: "sglangd runs SGLang profiling sessions on this GPU host",
		Long: `sglangd is the daemon behind sglangctl. It serves a versioned REST API on a
unix socket (and optionally on TCP with a bearer token), keeps its state in
SQLite under the data directory, and runs profiling sessions: driver gate,
model download, image pull, SGLang container, capture, trace merge and report.

Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads what can change live
(log level). Under systemd it reports readiness and pets the watchdog.

Environment:
` + config.EnvHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, path, err := loadConfig(f)
			if err != nil {
				return err
			}
			return runDaemon(cmd.Context(), cfg, path, f, stderr)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", "", "config file (default "+defaultConfigPath+" if it exists; env SGLANGD_CONFIG)")
	root.Flags().StringVar(&f.dataDir, "data-dir", "", "override data_dir")
	root.Flags().StringVar(&f.socket, "socket", "", "override api.socket")
	root.Flags().StringVar(&f.logLevel, "log-level", "", "override log.level")
	root.AddCommand(newVersionCmd(stdout), newConfigCmd(&f, stdout))
	return root
}

// loadConfig resolves the config file and applies flag overrides, which
// win over the environment, which wins over the file.
func loadConfig(f flags) (config.Config, string, error) {
	path := f.config
	if path == "" {
		path = os.Getenv("SGLANGD_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return config.Config{}, path, err
	}
	if f.dataDir != "" || f.socket != "" || f.logLevel != "" {
		if f.dataDir != "" {
			cfg.DataDir = f.dataDir
		}
		if f.socket != "" {
			cfg.API.Socket = f.socket
		}
		if f.logLevel != "" {
			cfg.Log.Level = f.logLevel
		}
		if err := cfg.Validate().Err(); err != nil {
			return config.Config{}, path, cliutil.Usagef("flags:\n%w", err)
		}
	}
	return cfg, path, nil
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the daemon binary's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := buildinfo.Get()
			_, err := fmt.Fprintf(stdout, "sglangd %s (commit %s, %s, %s/%s)\n", b.Version, b.Commit, b.GoVersion, b.OS, b.Arch)
			return err
		},
	}
}

func newConfigCmd(f *flags, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check and print configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate",
		Short: "Validate the config file (every bad field is listed) and exit",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, path, err := loadConfig(*f)
			if err != nil {
				return err
			}
			if path == "" {
				path = "(defaults)"
			}
			_, err = fmt.Fprintf(stdout, "%s: valid\n", path)
			return err
		},
	}, &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (file, environment and flags; secrets only as set/unset)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := loadConfig(*f)
			if err != nil {
				return err
			}
			if err := cliutil.PrintYAML(stdout, cfg); err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "# secrets: %s\n", cfg.Secrets)
			return err
		},
	}, &cobra.Command{
		Use:   "default",
		Short: "Print the built-in defaults as YAML",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return cliutil.PrintYAML(stdout, config.Default())
		},
	})
	return cmd
}
