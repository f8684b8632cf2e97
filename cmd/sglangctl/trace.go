package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/trace"
	"github.com/sglangd/sglangd/pkg/trace/report"
)

// The trace commands work on files and need no daemon.
func newTraceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Merge, analyse and compare Kineto traces (offline, no daemon)",
		Long: `Work on PyTorch-profiler (Kineto) traces written by SGLang: merge per-rank
files into one Perfetto-loadable trace, analyse a session (GPU busy time,
kernel families, per-step table, bubbles, CUDA graphs, rank imbalance) and
compare two analyses. These commands read files directly and do not talk to
the daemon.`,
	}
	cmd.AddCommand(newTraceMergeCmd(g), newTraceAnalyzeCmd(g), newTraceDiffCmd(g))
	return cmd
}

func newTraceMergeCmd(g *globals) *cobra.Command {
	var out, profile string
	var level int
	cmd := &cobra.Command{
		Use:   "merge DIR -o FILE",
		Short: "Merge the per-rank traces of DIR into one trace",
		Long: `Merge the per-rank traces of DIR (SGLang names: [prefix-]ID-TP-n[-DP-n][-PP-n][-EP-n]
[-EXTEND|-DECODE].trace.json.gz) into FILE, streaming with bounded memory.
Processes are labelled "[TP00-DP00] <pid>" and sorted by rank, timestamps are
put on one time base (baseTimeNanoseconds) and flow ids kept distinct per
rank. FILE is gzip-compressed when its name ends in .gz, and appears
complete or not at all.

Examples:
  sglangctl trace merge /data/traces/1764201700 -o merged.trace.json.gz
  sglangctl trace merge DIR --profile 1764201700.000002 -o /tmp/m.json.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return cliutil.Usagef("-o/--output FILE is required")
			}
			res, err := trace.MergeDir(cmd.Context(), args[0], out, trace.MergeOptions{Profile: profile, Level: level})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RANK\tEVENTS\tMiB JSON\tSHIFT\tFILE")
			for _, f := range res.Files {
				fmt.Fprintf(tw, "%s\t%d\t%.1f\t%s\t%s\n", f.Rank, f.Events, float64(f.Bytes)/(1<<20), trace.FormatDuration(f.ShiftNs), filepath.Base(f.Path))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Merged %d file(s), %d events (+%d metadata) into %s (%.1f MiB)\n",
				len(res.Files), res.InputEvents, res.AddedEvents, res.Path, float64(res.OutputBytes)/(1<<20))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "merged trace to write (gzip when it ends in .gz)")
	cmd.Flags().StringVar(&profile, "profile", "", "profile id (with prefix) when DIR holds several")
	cmd.Flags().IntVar(&level, "level", 0, "gzip level 1-9 (default 1, fastest)")
	return cmd
}

func newTraceAnalyzeCmd(g *globals) *cobra.Command {
	var profile, html, summary, title string
	var top int
	cmd := &cobra.Command{
		Use:   "analyze FILE|DIR",
		Short: "Analyse a trace file or a directory of per-rank traces",
		Long: `Analyse one trace (per-rank or merged) or the per-rank traces of a directory:
GPU busy/idle per rank (interval union), kernel families and top kernels,
the per-step table from SGLang's step[...] annotations (prefill vs decode,
tokens/s, CUDA-graph coverage, launch-bound steps), GPU bubbles between
steps and the CPU work in them, communication share and cross-rank
imbalance (stragglers), plus warnings about profiler distortion.

Prints a human summary, or the summary as JSON/YAML with -o json|yaml.

Examples:
  sglangctl trace analyze /data/traces/1764201700
  sglangctl trace analyze merged.trace.json.gz -o json > summary.json
  sglangctl trace analyze DIR --html report.html --summary summary.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := trace.AnalyzePath(cmd.Context(), args[0], trace.AnalyzeOptions{Profile: profile, TopKernels: top})
			if err != nil {
				return err
			}
			if summary != "" {
				if err := trace.WriteSummaryFile(summary, s); err != nil {
					return err
				}
			}
			if html != "" {
				if title == "" {
					title = "Trace report: " + filepath.Base(strings.TrimSuffix(args[0], "/"))
				}
				if err := report.WriteFile(html, s, report.Options{Title: title, Subtitle: args[0]}); err != nil {
					return err
				}
			}
			return g.print(s, func(w io.Writer) error { return s.WriteText(w) })
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "", "profile id (with prefix) when DIR holds several")
	cmd.Flags().StringVar(&html, "html", "", "also write a self-contained HTML report to this file")
	cmd.Flags().StringVar(&summary, "summary", "", "also write the summary JSON to this file")
	cmd.Flags().StringVar(&title, "title", "", "title of the HTML report")
	cmd.Flags().IntVar(&top, "top", 20, "kernels listed per rank")
	return cmd
}

func newTraceDiffCmd(g *globals) *cobra.Command {
	opts := trace.DefaultDiffOptions()
	var failOnRegression bool
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Compare two profiles (B against baseline A)",
		Long: `Compare profile B against baseline A. Each of A and B is a summary JSON file
(from 'trace analyze --summary' or -o json), a trace file or a directory of
per-rank traces (analysed first).

Per step mode (mean and median step time, tokens/s), per kernel family (time
per step) and per kernel (mean duration), changes count only when they clear
the relative threshold, the absolute minimum and, where the spread is known,
the noise (standard errors); kernels that appear or vanish are listed. The
verdict is "regression" when any step mode or family regressed.

Examples:
  sglangctl trace diff last-night/summary.json tonight/summary.json
  sglangctl trace diff A_DIR B_DIR --rel 0.1 --fail-on-regression`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := loadSummary(cmd, args[0])
			if err != nil {
				return err
			}
			b, err := loadSummary(cmd, args[1])
			if err != nil {
				return err
			}
			d := trace.Diff(*a, *b, opts)
			if err := g.print(d, func(w io.Writer) error { return d.WriteText(w) }); err != nil {
				return err
			}
			if failOnRegression && d.Verdict == trace.Regression {
				return &cliutil.ExitError{Code: cliutil.ExitFailure}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Float64Var(&opts.RelThreshold, "rel", opts.RelThreshold, "smallest relative change that counts")
	f.Int64Var(&opts.MinAbsNs, "min-abs-ns", opts.MinAbsNs, "smallest absolute change of step/family times (ns)")
	f.Int64Var(&opts.MinKernelAbsNs, "min-kernel-abs-ns", opts.MinKernelAbsNs, "smallest change of a kernel's mean duration (ns)")
	f.Int64Var(&opts.MinCount, "min-count", opts.MinCount, "fewest steps or calls on each side for a verdict")
	f.Float64Var(&opts.NoiseSigmas, "sigmas", opts.NoiseSigmas, "standard errors a mean must move")
	f.BoolVar(&failOnRegression, "fail-on-regression", false, "exit 1 when the verdict is regression")
	return cmd
}

// loadSummary reads a summary JSON file or analyses a trace path.
func loadSummary(cmd *cobra.Command, path string) (*trace.Summary, error) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() && strings.HasSuffix(path, ".json") && !strings.HasSuffix(path, ".trace.json") {
		s, err := trace.ReadSummaryFile(path)
		if err == nil || errors.Is(err, errdefs.ErrFailedPrecondition) {
			return s, err
		}
	}
	s, err := trace.AnalyzePath(cmd.Context(), path, trace.AnalyzeOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
