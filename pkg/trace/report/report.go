// Package report renders a trace Summary as one self-contained HTML page:
// inline CSS and SVG charts, no scripts or external assets, so it can be
// archived with a session and opened offline.
package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/sglangd/sglangd/pkg/trace"
)

// Options describes the page.
type Options struct {
	// Title heads the page; default "Trace report".
	Title string
	// Subtitle is shown under the title (session id, model, time).
	Subtitle string
	// MaxSteps bounds the per-step table (default 300 rows).
	MaxSteps int
}

// familyColors gives each kernel family a stable color.
var familyColors = map[string]string{
	trace.FamilyGEMM: "#4e79a7", trace.FamilyAttention: "#f28e2b", trace.FamilyMoE: "#9c755f", trace.FamilyComm: "#e15759",
	trace.FamilyNorm: "#a0cbe8", trace.FamilyActivation: "#59a14f", trace.FamilyRoPE: "#edc948", trace.FamilyKVCache: "#b07aa1",
	trace.FamilySampling: "#ff9da7", trace.FamilyQuantization: "#8cd17d", trace.FamilyElementwise: "#bab0ac",
	trace.FamilyMemcpy: "#499894", trace.FamilyMemset: "#d4a6c8", trace.FamilyOther: "#79706e",
}

var modeColors = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948"}

// WriteFile writes the report to path atomically (temp file, fsync, rename).
func WriteFile(path string, s *trace.Summary, opts Options) error {
	var buf bytes.Buffer
	if err := Write(&buf, s, opts); err != nil {
		return err
	}
	if err := renameio.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// Write renders the report.
func Write(w io.Writer, s *trace.Summary, opts Options) error {
	if opts.Title == "" {
		opts.Title = "Trace report"
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = 300
	}
	d := pageData{Opts: opts, S: s}
	d.Cards = cards(s)
	d.Timeline = template.HTML(timelineSVG(s))
	d.FamilyChart = template.HTML(familySVG(s))
	d.StepChart = template.HTML(stepDistSVG(s))
	d.RankChart = template.HTML(rankSVG(s))
	for _, r := range s.Ranks {
		if r.Leader && len(r.Steps) > 0 {
			d.StepRank = r.Label
			d.Steps = r.Steps
			if len(d.Steps) > opts.MaxSteps {
				d.StepsCut = len(d.Steps) - opts.MaxSteps
				d.Steps = d.Steps[:opts.MaxSteps]
			}
			break
		}
	}
	return pageTmpl.Execute(w, d)
}

type card struct{ Label, Value, Note string }

type pageData struct {
	Opts                                        Options
	S                                           *trace.Summary
	Cards                                       []card
	Timeline, FamilyChart, StepChart, RankChart template.HTML
	StepRank                                    string
	Steps                                       []trace.Step
	StepsCut                                    int
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func cards(s *trace.Summary) []card {
	c := []card{
		{"Ranks", fmt.Sprint(len(s.Ranks)), strings.Join(s.Devices, ", ")},
		{"Window", trace.FormatDuration(s.WindowNs), fmt.Sprintf("%d events", s.Events.Total)},
		{"GPU utilization", pct(s.Utilization), "busy " + trace.FormatDuration(s.GPUBusyNs)},
		{"Communication", pct(s.Comm.Share), "wait " + trace.FormatDuration(s.Comm.WaitNs)},
		{"CUDA graphs", pct(s.Graph.Coverage), fmt.Sprintf("%d launches", s.Graph.Launches)},
		{"Bubbles", pct(s.Bubbles.Share), fmt.Sprintf("%d gaps, %s", s.Bubbles.Count, trace.FormatDuration(s.Bubbles.TotalNs))},
	}
	for _, m := range s.Modes {
		note := fmt.Sprintf("%d steps, p50 %s", m.Steps, trace.FormatDuration(m.P50Ns))
		c = append(c, card{m.Mode + " tok/s", fmt.Sprintf("%.0f", m.TokensPerSec), note})
	}
	return c
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// timelineSVG draws each rank's devices as a heat strip of busy share over
// the session window.
func timelineSVG(s *trace.Summary) string {
	type row struct {
		label string
		tl    []float64
	}
	var rows []row
	for _, r := range s.Ranks {
		for _, d := range r.Devices {
			if len(d.Timeline) == 0 {
				continue
			}
			label := r.Label
			if len(r.Devices) > 1 {
				label += fmt.Sprintf(" GPU%d", d.Device)
			}
			rows = append(rows, row{label, d.Timeline})
		}
	}
	if len(rows) == 0 {
		return `<p class="muted">No GPU activity.</p>`
	}
	const left, width, rowH = 170, 900, 22
	h := len(rows)*rowH + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="GPU busy timeline">`, left+width+10, h, left+width+10, h)
	for i, r := range rows {
		y := i * rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end">%s</text>`, left-8, y+15, esc(r.label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#f1f1f1"/>`, left, y+3, width, rowH-6)
		bw := float64(width) / float64(len(r.tl))
		for k, v := range r.tl {
			if v <= 0 {
				continue
			}
			fmt.Fprintf(&b, `<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="#1f6fb2" fill-opacity="%.2f"><title>%s busy</title></rect>`,
				float64(left)+float64(k)*bw, y+3, bw+0.3, rowH-6, 0.15+0.85*v, pct(v))
		}
	}
	y := len(rows)*rowH + 14
	for k := 0; k <= 4; k++ {
		x := left + k*width/4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#999"/>`, x, x, y-10, y-6)
		anchor := map[int]string{0: "start", 4: "end"}[k]
		if anchor == "" {
			anchor = "middle"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="%s">%s</text>`, x, y+6, anchor, esc(trace.FormatDuration(s.WindowNs*int64(k)/4)))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// familySVG draws one stacked bar per rank plus the session.
func familySVG(s *trace.Summary) string {
	type bar struct {
		label string
		fams  []trace.FamilyStat
	}
	bars := []bar{{"all ranks", s.Families}}
	if len(s.Ranks) > 1 {
		for _, r := range s.Ranks {
			bars = append(bars, bar{r.Label, r.Families})
		}
	}
	const left, width, rowH = 170, 760, 26
	present := map[string]bool{}
	for _, br := range bars {
		for _, f := range br.fams {
			present[f.Family] = true
		}
	}
	var legend []string
	for _, f := range trace.Families {
		if present[f] {
			legend = append(legend, f)
		}
	}
	legendRows := (len(legend) + 4) / 5
	h := len(bars)*rowH + legendRows*20 + 16
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="kernel family breakdown">`, left+width+10, h, left+width+10, h)
	for i, br := range bars {
		y := i * rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end">%s</text>`, left-8, y+17, esc(br.label))
		x := float64(left)
		fams := slices.Clone(br.fams)
		slices.SortStableFunc(fams, func(a, c trace.FamilyStat) int { return familyIndex(a.Family) - familyIndex(c.Family) })
		for _, f := range fams {
			w := f.Share * width
			if w <= 0 {
				continue
			}
			fmt.Fprintf(&b, `<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: %s (%s)</title></rect>`,
				x, y+4, w, rowH-8, familyColors[f.Family], esc(f.Family), pct(f.Share), esc(trace.FormatDuration(f.TotalNs)))
			if w > 38 {
				fmt.Fprintf(&b, `<text x="%.2f" y="%d" class="inbar">%.0f%%</text>`, x+3, y+17, 100*f.Share)
			}
			x += w
		}
	}
	y0 := len(bars)*rowH + 10
	for i, f := range legend {
		x := left + (i%5)*150
		y := y0 + (i/5)*20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" class="lbl">%s</text>`, x, y, familyColors[f], x+17, y+10, esc(f))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func familyIndex(f string) int {
	if i := slices.Index(trace.Families, f); i >= 0 {
		return i
	}
	return len(trace.Families)
}

// stepDistSVG draws a histogram of step wall times per mode on a log axis.
func stepDistSVG(s *trace.Summary) string {
	var modes []trace.ModeStat
	for _, m := range s.Modes {
		if len(m.WallSamples) > 0 {
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		return `<p class="muted">No step annotations, so no step-time distribution.</p>`
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, m := range modes {
		for _, w := range m.WallSamples {
			v := math.Max(float64(w), 1)
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	llo, lhi := math.Log10(lo)-0.05, math.Log10(hi)+0.05
	const bins, left, width, plotH = 40, 60, 860, 160
	var b strings.Builder
	h := len(modes)*(plotH+30) + 30
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="step time distribution">`, left+width+20, h, left+width+20, h)
	xOf := func(v float64) float64 { return left + (math.Log10(math.Max(v, 1))-llo)/(lhi-llo)*width }
	for mi, m := range modes {
		counts := make([]int, bins)
		for _, w := range m.WallSamples {
			k := int((math.Log10(math.Max(float64(w), 1)) - llo) / (lhi - llo) * bins)
			counts[max(0, min(k, bins-1))]++
		}
		peak := slices.Max(counts)
		y0 := mi*(plotH+30) + 10
		color := modeColors[mi%len(modeColors)]
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl">%s: %d steps, p50 %s, p90 %s, max %s</text>`, left, y0+10, esc(m.Mode), m.Steps,
			esc(trace.FormatDuration(m.P50Ns)), esc(trace.FormatDuration(m.P90Ns)), esc(trace.FormatDuration(m.MaxNs)))
		base := y0 + plotH
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#999"/>`, left, left+width, base, base)
		bw := float64(width) / bins
		for k, c := range counts {
			if c == 0 {
				continue
			}
			bh := float64(plotH-24) * float64(c) / float64(peak)
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"><title>%d steps</title></rect>`,
				float64(left)+float64(k)*bw+1, float64(base)-bh, bw-2, bh, color, c)
		}
		for _, p := range []struct {
			name string
			v    int64
		}{{"p50", m.P50Ns}, {"p90", m.P90Ns}} {
			x := xOf(float64(p.v))
			fmt.Fprintf(&b, `<line x1="%.2f" x2="%.2f" y1="%d" y2="%d" stroke="#333" stroke-dasharray="3,3"/><text x="%.2f" y="%d" class="axis">%s</text>`,
				x, x, y0+16, base, x+3, y0+26, p.name)
		}
		for e := math.Ceil(llo); e <= lhi; e++ {
			x := xOf(math.Pow(10, e))
			fmt.Fprintf(&b, `<text x="%.2f" y="%d" class="axis" text-anchor="middle">%s</text>`, x, base+14, esc(trace.FormatDuration(int64(math.Pow(10, e)))))
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// rankSVG compares ranks: GPU busy split into communication wait, other
// communication and compute.
func rankSVG(s *trace.Summary) string {
	if len(s.Ranks) < 2 {
		return `<p class="muted">Single rank: no imbalance to show.</p>`
	}
	var maxV int64
	for _, r := range s.Ranks {
		maxV = max(maxV, r.GPUBusyNs+r.GPUIdleNs)
	}
	if maxV == 0 {
		return `<p class="muted">No GPU activity.</p>`
	}
	const left, width, rowH = 170, 760, 26
	h := len(s.Ranks)*rowH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="rank imbalance">`, left+width+10, h, left+width+10, h)
	for i, r := range s.Ranks {
		y := i * rowH
		wait := min(r.Comm.WaitNs, r.Comm.BusyNs)
		comm := r.Comm.BusyNs - wait
		compute := r.GPUBusyNs - r.Comm.BusyNs
		label := r.Label
		if s.Imbalance != nil && s.Imbalance.Straggler == r.Label {
			label += " ⚑"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end">%s</text>`, left-8, y+17, esc(label))
		x := float64(left)
		for _, seg := range []struct {
			v     int64
			color string
			name  string
		}{{compute, "#4e79a7", "compute"}, {comm, "#f28e2b", "communication"}, {wait, "#e15759", "waiting for other ranks"}, {r.GPUIdleNs, "#dddddd", "idle"}} {
			if seg.v <= 0 {
				continue
			}
			w := float64(seg.v) / float64(maxV) * width
			fmt.Fprintf(&b, `<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: %s</title></rect>`, x, y+4, w, rowH-8, seg.color, seg.name, esc(trace.FormatDuration(seg.v)))
			x += w
		}
	}
	y := len(s.Ranks)*rowH + 12
	for i, l := range []struct{ c, n string }{{"#4e79a7", "compute"}, {"#f28e2b", "communication"}, {"#e15759", "waiting for other ranks"}, {"#dddddd", "idle"}} {
		x := left + i*170
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" class="lbl">%s</text>`, x, y, l.c, x+17, y+10, l.n)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

var funcs = template.FuncMap{
	"dur":   trace.FormatDuration,
	"pct":   pct,
	"short": func(s string) string { return trace.ShortName(s, 80) },
	"color": func(f string) string { return familyColors[f] },
	"f0":    func(f float64) string { return fmt.Sprintf("%.0f", f) },
}

var pageTmpl = template.Must(template.New("page").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Opts.Title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px 32px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e3e3;padding-bottom:4px}
.sub{color:#666;margin-bottom:16px}.muted{color:#888}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #e3e3e3;border-radius:6px;padding:8px 12px;min-width:130px}
.card .v{font-size:20px;font-weight:600}.card .l{color:#666;font-size:12px}.card .n{color:#888;font-size:11px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#fafafa;font-weight:600}td.t,th.t{text-align:left;white-space:normal;max-width:640px}
.warn{background:#fff6e5;border-left:4px solid #f0a500;padding:6px 10px;margin:4px 0}.warn code{color:#a05a00}
svg text.lbl{font-size:12px;fill:#333}svg text.axis{font-size:11px;fill:#666}svg text.inbar{font-size:11px;fill:#fff}
.sw{display:inline-block;width:10px;height:10px;margin-right:5px;vertical-align:middle}
details summary{cursor:pointer;color:#1f6fb2}
</style></head><body>
<h1>{{.Opts.Title}}</h1>{{with .Opts.Subtitle}}<div class="sub">{{.}}</div>{{end}}
<div class="cards">{{range .Cards}}<div class="card"><div class="l">{{.Label}}</div><div class="v">{{.Value}}</div><div class="n">{{.Note}}</div></div>{{end}}</div>
{{with .S.Warnings}}<h2>Warnings</h2>{{range .}}<div class="warn"><code>{{.Code}}</code> {{.Message}}</div>{{end}}{{end}}
<h2>GPU timeline per rank</h2><p class="muted">Darker is busier; each cell is the busy share of its slice of the session window.</p>
{{.Timeline}}
<h2>Kernel families</h2>
{{.FamilyChart}}
<table><tr><th class="t">Family</th><th>Time</th><th>Share</th><th>Count</th></tr>
{{range .S.Families}}<tr><td class="t"><span class="sw" style="background:{{color .Family}}"></span>{{.Family}}</td><td>{{dur .TotalNs}}</td><td>{{pct .Share}}</td><td>{{.Count}}</td></tr>{{end}}</table>
<h2>Step time by mode</h2>
{{.StepChart}}
{{with .S.Modes}}<table><tr><th class="t">Mode</th><th>Steps</th><th>Mean</th><th>P50</th><th>P90</th><th>P99</th><th>Max</th><th>Tokens</th><th>Tok/s</th><th>GPU busy</th><th>Comm</th><th>Graph</th><th>Launch-bound</th></tr>
{{range .}}<tr><td class="t">{{.Mode}}</td><td>{{.Steps}}</td><td>{{dur .MeanNs}}</td><td>{{dur .P50Ns}}</td><td>{{dur .P90Ns}}</td><td>{{dur .P99Ns}}</td><td>{{dur .MaxNs}}</td><td>{{.Tokens}}</td><td>{{f0 .TokensPerSec}}</td><td>{{dur .GPUBusyNs}}</td><td>{{dur .CommNs}}</td><td>{{pct .GraphCoverage}}</td><td>{{.LaunchBoundSteps}}</td></tr>{{end}}</table>{{end}}
{{if .S.Bubbles.Count}}<h3>GPU bubbles between steps</h3>
<p>{{.S.Bubbles.Count}} gaps, {{dur .S.Bubbles.TotalNs}} in total ({{pct .S.Bubbles.Share}} of the steps' window), mean {{dur .S.Bubbles.MeanNs}}, max {{dur .S.Bubbles.MaxNs}}; host synchronisation {{dur .S.Bubbles.SyncNs}}, no profiled CPU op {{dur .S.Bubbles.UnattributedNs}}.</p>
{{with .S.Bubbles.CPU}}<table><tr><th class="t">CPU work during bubbles</th><th>Time</th><th>Count</th></tr>{{range .}}<tr><td class="t">{{short .Name}}</td><td>{{dur .Ns}}</td><td>{{.Count}}</td></tr>{{end}}</table>{{end}}{{end}}
<h2>Rank imbalance</h2>
{{.RankChart}}
{{with .S.Imbalance}}<p>Busy spread {{pct .BusySpread}} (min {{dur .MinBusyNs}}, max {{dur .MaxBusyNs}}); {{.Collectives}} collectives aligned{{if not .Aligned}} (collective counts differ between ranks){{end}}; step spread {{pct .StepSpread}}{{if .SameTimeBase}}; largest collective start skew {{dur .MaxStartSkewNs}}{{end}}.</p>
{{with .MaxWait}}<p>Largest wait: <b>{{.Label}}</b> waited {{dur .WaitNs}} for <b>{{.Waited}}</b> in collective #{{.Ordinal}} ({{short .Kernel}}) at +{{dur .StartNs}}.</p>{{end}}
<table><tr><th class="t">Rank</th><th>GPU busy</th><th>Waited</th><th>Last to arrive</th><th>Made others wait</th></tr>{{range .Ranks}}<tr><td class="t">{{.Label}}</td><td>{{dur .BusyNs}}</td><td>{{dur .WaitNs}}</td><td>{{.LastArrivals}}</td><td>{{dur .CausedNs}}</td></tr>{{end}}</table>{{end}}
<h2>Top kernels</h2>
<table><tr><th class="t">Kernel</th><th class="t">Family</th><th>Time</th><th>Share</th><th>Count</th><th>Mean</th><th>Min</th><th>Max</th></tr>
{{range $i, $k := .S.Kernels}}{{if lt $i 25}}<tr><td class="t" title="{{$k.Name}}">{{short $k.Name}}</td><td class="t">{{$k.Family}}</td><td>{{dur $k.TotalNs}}</td><td>{{pct $k.Share}}</td><td>{{$k.Count}}</td><td>{{dur $k.MeanNs}}</td><td>{{dur $k.MinNs}}</td><td>{{dur $k.MaxNs}}</td></tr>{{end}}{{end}}</table>
<h2>Ranks</h2>
<table><tr><th class="t">Rank</th><th class="t">File</th><th>Events</th><th>GPU busy</th><th>Idle</th><th>Util</th><th>Steps</th><th>Comm</th><th>Graph</th><th>Launch gated</th><th>Syncs</th></tr>
{{range .S.Ranks}}<tr><td class="t">{{.Label}}{{if .Leader}} ★{{end}}</td><td class="t">{{.File}}</td><td>{{.Events.Total}}</td><td>{{dur .GPUBusyNs}}</td><td>{{dur .GPUIdleNs}}</td><td>{{pct .Utilization}}</td><td>{{len .Steps}}</td><td>{{pct .Comm.Share}}</td><td>{{pct .Graph.Coverage}}</td><td>{{pct .Launch.GatedShare}}</td><td>{{.Launch.SyncCalls}}</td></tr>{{end}}</table>
{{if .Steps}}<h2>Steps of {{.StepRank}}</h2>
<details><summary>{{len .Steps}} steps{{if .StepsCut}} (first shown; {{.StepsCut}} more in summary.json){{end}}</summary>
<table><tr><th>#</th><th class="t">Mode</th><th>BS</th><th>Tokens</th><th>Start</th><th>Wall</th><th>CPU</th><th>GPU span</th><th>GPU busy</th><th>Queued</th><th>Kernels</th><th class="t">Graph</th><th>Comm</th><th class="t">Flags</th></tr>
{{range .Steps}}<tr><td>{{.Index}}</td><td class="t">{{.Mode}}</td><td>{{.BS}}</td><td>{{.Tokens}}</td><td>{{dur .StartNs}}</td><td>{{dur .WallNs}}</td><td>{{dur .CPUNs}}</td><td>{{dur .GPUSpanNs}}</td><td>{{dur .GPUBusyNs}}</td><td>{{dur .QueuedNs}}</td><td>{{.Kernels}}</td><td class="t">{{if .Graph}}graph{{else}}eager{{end}}</td><td>{{dur .CommNs}}</td><td class="t">{{if .LaunchBound}}launch-bound {{end}}{{if .Partial}}partial{{end}}</td></tr>{{end}}</table></details>{{end}}
<p class="muted" style="margin-top:24px">Generated by sglangd from {{len .S.Ranks}} trace file(s). Times are relative to the earliest event of any rank.</p>
</body></html>
`))
