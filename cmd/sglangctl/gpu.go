package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/api"
)

func newGPUCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Inspect the host's GPUs and NVIDIA driver",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newGPUListCmd(g))
	return cmd
}

func newGPUListCmd(g *globals) *cobra.Command {
	var cuda string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List GPUs, their load and the driver gate's verdict",
		Long: `List the GPUs the daemon sees through NVML: index, UUID, name, memory,
utilization, power, temperature, SM clock, compute processes and the session
holding each GPU. A GPU running compute processes that no sglangd session
started is marked "foreign"; sessions skip it unless
gpu.allow_foreign_processes is set.

The header shows the driver and the driver gate: the driver must be at least
gpu.min_driver and, with --cuda, what that CUDA release needs (CUDA 12.8 needs
570.26, 12.9 needs 575.51.03, 13.0 needs 580.65.06).

Exit code 1 if the daemon has no NVIDIA driver or the gate fails.

Examples:
  sglangctl gpu list
  sglangctl gpu list --cuda 13.0.2     # can this host run a CUDA 13.0 image?
  sglangctl gpu list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.GPUs(cmd.Context(), cuda)
			if err != nil {
				return err
			}
			g.warnVersion(c)
			if err := g.print(l, func(w io.Writer) error { return printGPUTable(w, l) }); err != nil {
				return err
			}
			if !l.Gate.OK {
				if g.output != "table" {
					fmt.Fprintf(g.stderr, "Error: %s\n", l.Gate.Message)
				}
				return &cliutil.ExitError{Code: cliutil.ExitFailure}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cuda, "cuda", "", "check the gate for an image of this CUDA version (e.g. 13.0.2, as in its CUDA_VERSION)")
	return cmd
}

func printGPUTable(w io.Writer, l *api.GPUList) error {
	if l.Mode == "none" {
		fmt.Fprintln(w, "gpu.mode is none: no GPUs; sessions run without them (simulator)")
		return nil
	}
	gate := "ok"
	if !l.Gate.OK {
		gate = "FAIL"
	}
	fmt.Fprintf(w, "Driver %s (CUDA %s), gate %s: %s\n", l.Driver.Version, orDash(l.Driver.CUDAVersion), gate, l.Gate.Message)
	if l.Gate.Hint != "" {
		fmt.Fprintf(w, "  hint: %s\n", l.Gate.Hint)
	}
	for _, warn := range l.Gate.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "INDEX\tUUID\tNAME\tMEMORY\tUTIL\tPOWER\tTEMP\tSM CLOCK\tPROCESSES\tSESSION")
	for _, d := range l.GPUs {
		procs := fmt.Sprint(len(d.Processes))
		if d.Foreign {
			var ps []string
			for _, p := range d.Processes {
				ps = append(ps, strings.TrimSpace(fmt.Sprintf("%d %s", p.PID, p.Name)))
			}
			procs += " foreign (" + strings.Join(ps, ", ") + ")"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s / %s\t%d%%\t%.0f W\t%d °C\t%d MHz\t%s\t%s\n",
			d.Index, d.UUID, d.Name, gib(d.MemoryUsedBytes), gib(d.MemoryTotalBytes), d.UtilizationPercent,
			d.PowerWatts, d.TemperatureCelsius, d.SMClockMHz, procs, orDash(d.Session))
	}
	return nil
}

func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
