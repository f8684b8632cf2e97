package trace

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
)

// fmtDur formats nanoseconds for people: 1.23 ms, 456.7 us, 2.01 s.
func fmtDur(ns int64) string {
	neg := ""
	if ns < 0 {
		neg, ns = "-", -ns
	}
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%s%.2f s", neg, float64(ns)/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%s%.2f ms", neg, float64(ns)/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%s%.1f us", neg, float64(ns)/1e3)
	}
	return fmt.Sprintf("%s%d ns", neg, ns)
}

// FormatDuration formats nanoseconds the way the text summary does.
func FormatDuration(ns int64) string { return fmtDur(ns) }

var (
	templateArgsRe  = regexp.MustCompile(`<[^<>]*>`)
	paramsRe        = regexp.MustCompile(`\([^()]*\)`)
	genericKernelRe = regexp.MustCompile(`^[\w:]*(?:elementwise_kernel|reduce_kernel|elementwise_kernel_manual_unroll|vectorized_elementwise_kernel|unrolled_elementwise_kernel|index_elementwise_kernel)\b`)
	functorRe       = regexp.MustCompile(`(?:native::|^|[<,\s:])(\w*(?:Functor|_kernel_cuda|_kernel_impl|Ops)\w*)`)
)

// ShortName makes a demangled kernel name readable: template arguments and
// parameter lists are dropped and the result is cut to max runes.
func ShortName(name string, maxLen int) string { return shortName(name, maxLen) }

func shortName(name string, maxLen int) string {
	n := strings.TrimPrefix(name, "void ")
	n = strings.ReplaceAll(n, "(anonymous namespace)::", "")
	hint := ""
	if generic := genericKernelRe.FindString(n); generic != "" {
		// at::native's generic kernels differ only in their functor.
		for _, m := range functorRe.FindAllStringSubmatch(n[len(generic):], -1) {
			if !strings.HasPrefix(m[1], "gpu_kernel") && m[1] != "BinaryFunctor" && m[1] != "UnaryFunctor" {
				hint = " [" + m[1] + "]"
				break
			}
		}
	}
	for i := 0; i < 8 && strings.ContainsAny(n, "<>"); i++ {
		m := templateArgsRe.ReplaceAllString(n, "")
		if m == n {
			break
		}
		n = m
	}
	for i := 0; i < 4 && strings.Contains(n, "("); i++ {
		m := paramsRe.ReplaceAllString(n, "")
		if m == n {
			break
		}
		n = m
	}
	n = strings.TrimSpace(n)
	if n == "" {
		n = name
	}
	n += hint
	if r := []rune(n); maxLen > 0 && len(r) > maxLen {
		n = string(r[:maxLen-1]) + "…"
	}
	return n
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// WriteText writes a human-readable summary.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("Trace summary: %d rank(s), %s window, %d events", len(s.Ranks), fmtDur(s.WindowNs), s.Events.Total)
	if len(s.Devices) > 0 {
		p(", %s", strings.Join(s.Devices, ", "))
	}
	p("\n")
	p("GPU busy %s of %s span (%s), kernel time %s; communication %s of busy (exposed %s, waiting %s); CUDA-graph coverage %s\n",
		fmtDur(s.GPUBusyNs), fmtDur(s.GPUBusyNs+s.GPUIdleNs), pct(s.Utilization), fmtDur(s.KernelTimeNs),
		pct(s.Comm.Share), fmtDur(s.Comm.ExposedNs), fmtDur(s.Comm.WaitNs), pct(s.Graph.Coverage))

	if len(s.Warnings) > 0 {
		p("\nWarnings:\n")
		for _, wn := range s.Warnings {
			p("  ! [%s] %s\n", wn.Code, wn.Message)
		}
	}

	tw := func(header string, rows [][]string) {
		t := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t, header)
		for _, r := range rows {
			fmt.Fprintln(t, strings.Join(r, "\t"))
		}
		_ = t.Flush()
	}

	p("\nRanks:\n")
	var rows [][]string
	for _, r := range s.Ranks {
		rows = append(rows, []string{"  " + r.Label, fmtDur(r.GPUBusyNs), fmtDur(r.GPUIdleNs), pct(r.Utilization),
			fmt.Sprint(len(r.Steps)), pct(r.Comm.Share), fmtDur(r.Comm.WaitNs), fmt.Sprint(r.Events.Total)})
	}
	tw("  RANK\tBUSY\tIDLE\tUTIL\tSTEPS\tCOMM\tWAIT\tEVENTS", rows)

	if len(s.Modes) > 0 {
		p("\nSteps by mode (leader ranks):\n")
		rows = rows[:0]
		for _, m := range s.Modes {
			rows = append(rows, []string{"  " + m.Mode, fmt.Sprint(m.Steps), fmtDur(m.MeanNs), fmtDur(m.P50Ns), fmtDur(m.P90Ns),
				fmtDur(m.MaxNs), fmt.Sprint(m.Tokens), fmt.Sprintf("%.0f", m.TokensPerSec), pct(m.GraphCoverage), fmt.Sprint(m.LaunchBoundSteps)})
		}
		tw("  MODE\tSTEPS\tMEAN\tP50\tP90\tMAX\tTOKENS\tTOK/S\tGRAPH\tLAUNCH-BOUND", rows)
		if s.Bubbles.Count > 0 {
			p("\nGPU bubbles between steps: %d, total %s (%s of the steps' window), mean %s, max %s; host sync %s, unattributed %s\n",
				s.Bubbles.Count, fmtDur(s.Bubbles.TotalNs), pct(s.Bubbles.Share), fmtDur(s.Bubbles.MeanNs), fmtDur(s.Bubbles.MaxNs),
				fmtDur(s.Bubbles.SyncNs), fmtDur(s.Bubbles.UnattributedNs))
			for _, c := range s.Bubbles.CPU {
				p("    %-60s %10s  x%d\n", shortName(c.Name, 60), fmtDur(c.Ns), c.Count)
			}
		}
	}

	p("\nKernel families:\n")
	rows = rows[:0]
	for _, f := range s.Families {
		rows = append(rows, []string{"  " + f.Family, fmtDur(f.TotalNs), pct(f.Share), fmt.Sprint(f.Count)})
	}
	tw("  FAMILY\tTIME\tSHARE\tCOUNT", rows)

	p("\nTop kernels:\n")
	rows = rows[:0]
	for i, k := range s.Kernels {
		if i == 15 {
			break
		}
		rows = append(rows, []string{"  " + shortName(k.Name, 70), k.Family, fmtDur(k.TotalNs), pct(k.Share), fmt.Sprint(k.Count), fmtDur(k.MeanNs)})
	}
	tw("  KERNEL\tFAMILY\tTIME\tSHARE\tCOUNT\tMEAN", rows)

	if im := s.Imbalance; im != nil {
		p("\nRank imbalance: busy spread %s (min %s, max %s), %d collectives aligned", pct(im.BusySpread), fmtDur(im.MinBusyNs), fmtDur(im.MaxBusyNs), im.Collectives)
		if !im.Aligned {
			p(" (ranks had different collective counts)")
		}
		p(", step spread %s\n", pct(im.StepSpread))
		for _, r := range im.Ranks {
			p("    %-20s waited %10s, last to arrive %d times (others waited %s)\n", r.Label, fmtDur(r.WaitNs), r.LastArrivals, fmtDur(r.CausedNs))
		}
		if im.MaxWait != nil {
			p("  largest wait: %s waited %s for %s in collective #%d (%s) at +%s\n", im.MaxWait.Label, fmtDur(im.MaxWait.WaitNs),
				im.MaxWait.Waited, im.MaxWait.Ordinal, shortName(im.MaxWait.Kernel, 50), fmtDur(im.MaxWait.StartNs))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
