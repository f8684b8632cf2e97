// Command tracebench generates scaled-up per-rank Kineto traces from real
// fixtures and times the trace engine on them; bench/trace.sh drives it
// next to SGLang's own merger. Subcommands:
//
//	tracebench gen -src A.json.gz[,B.json.gz] -ranks 4 -mb 300 -id ID -out DIR
//	tracebench merge DIR OUT
//	tracebench analyze PATH
//
// merge and analyze print one JSON line with the elapsed time and the
// process's peak RSS (getrusage), so the script needs no /usr/bin/time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/pgzip"

	"github.com/sglangd/sglangd/pkg/trace"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "merge":
		if len(os.Args) != 4 {
			usage()
		}
		err = merge(os.Args[2], os.Args[3])
	case "analyze":
		if len(os.Args) != 3 {
			usage()
		}
		err = analyze(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tracebench gen -src FILES -ranks N -mb MB -id ID -out DIR | merge DIR OUT | analyze PATH")
	os.Exit(2)
}

func maxRSSKiB() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// cpuSeconds is user+system CPU time so far: unlike wall time it does not
// depend on what else runs on the machine.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func merge(dir, out string) error {
	t0 := time.Now()
	res, err := trace.MergeDir(context.Background(), dir, out, trace.MergeOptions{})
	if err != nil {
		return err
	}
	var in int64
	for _, f := range res.Files {
		in += f.Bytes
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"seconds": time.Since(t0).Seconds(), "cpu_seconds": cpuSeconds(), "max_rss_kib": maxRSSKiB(), "events": res.InputEvents,
		"input_bytes": in, "output_bytes": res.OutputBytes, "files": len(res.Files),
	})
}

func analyze(path string) error {
	t0 := time.Now()
	s, err := trace.AnalyzePath(context.Background(), path, trace.AnalyzeOptions{})
	if err != nil {
		return err
	}
	sec := time.Since(t0).Seconds()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"seconds": sec, "cpu_seconds": cpuSeconds(), "max_rss_kib": maxRSSKiB(), "events": s.Events.Total, "events_per_sec": float64(s.Events.Total) / sec,
		"ranks": len(s.Ranks), "steps": s.Steps,
	})
}

// gen writes ranks files of at least mb MiB of JSON each by repeating the
// source's events with timestamps shifted past the previous copy and ids
// offset so that correlations and flows stay unique. Metadata events are
// written once. Everything streams.
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	src := fs.String("src", "", "comma-separated source traces (rank r uses source r mod n)")
	ranks := fs.Int("ranks", 4, "ranks to write")
	mb := fs.Int("mb", 300, "uncompressed MiB per rank (at least)")
	id := fs.String("id", "1764300000.000001", "profile id")
	out := fs.String("out", "", "output directory")
	_ = fs.Parse(args)
	if *src == "" || *out == "" {
		usage()
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	srcs := strings.Split(*src, ",")
	for r := 0; r < *ranks; r++ {
		path := filepath.Join(*out, fmt.Sprintf("%s-TP-%d.trace.json.gz", *id, r))
		n, err := genRank(srcs[r%len(srcs)], path, int64(*mb)<<20)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s (%d MiB JSON)\n", path, n>>20)
	}
	return nil
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func genRank(src, path string, target int64) (int64, error) {
	// First pass: the window to shift by.
	var minTs, maxEnd int64
	first := true
	if err := forEach(src, func(ev *trace.Event) {
		if ev.HasTs && ev.Ph != 'M' {
			if first || ev.Ts < minTs {
				minTs = ev.Ts
			}
			if first || ev.End() > maxEnd {
				maxEnd = ev.End()
			}
			first = false
		}
	}, nil); err != nil {
		return 0, err
	}
	window := maxEnd - minTs + 1_000_000 // 1 ms apart
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zw, _ := pgzip.NewWriterLevel(f, 1)
	cw := &counter{w: zw}
	bw := bufio.NewWriterSize(cw, 1<<20)
	wroteHeader := false
	sep := false
	var scratch []byte
	for copyN := int64(0); ; copyN++ {
		err := forEach(src, func(ev *trace.Event) {
			if ev.Ph == 'M' && copyN > 0 {
				return
			}
			if sep {
				bw.WriteString(",\n")
			}
			sep = true
			scratch = rewrite(scratch[:0], ev, copyN*window, uint64(copyN)*10_000_000)
			bw.Write(scratch)
		}, func(h *trace.Header) {
			if wroteHeader {
				return
			}
			wroteHeader = true
			bw.WriteString("{\n")
			for _, k := range h.Keys[:h.BeforeEvents] {
				kb, _ := json.Marshal(k.Name)
				bw.Write(kb)
				bw.WriteString(": ")
				bw.Write(k.Value)
				bw.WriteString(",\n")
			}
			bw.WriteString(`"traceEvents": [` + "\n")
		})
		if err != nil {
			return 0, err
		}
		if cw.n+int64(bw.Buffered()) >= target {
			break
		}
	}
	bw.WriteString("\n]}\n")
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return cw.n, f.Close()
}

func forEach(path string, fn func(*trace.Event), header func(*trace.Header)) error {
	r, err := trace.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if header != nil && r.Events() == 1 {
			header(r.Header())
		}
		fn(ev)
	}
}

// rewrite copies ev with its ts shifted and its flow id and correlation
// offset, editing the literals in place.
func rewrite(dst []byte, ev *trace.Event, shift int64, idOff uint64) []byte {
	raw := ev.Raw
	if shift == 0 {
		return append(dst, raw...)
	}
	type edit struct {
		start, end int
		val        []byte
	}
	var edits []edit
	if ev.HasTs && ev.Ph != 'M' {
		if s, e, ok := literal(raw, []byte(`"ts":`)); ok {
			ns := ev.Ts + shift
			v := strconv.AppendInt(nil, ns/1000, 10)
			v = append(v, '.', byte('0'+ns%1000/100), byte('0'+ns%100/10), byte('0'+ns%10))
			edits = append(edits, edit{s, e, v})
		}
	}
	if ev.HasFlowID {
		if s, e, ok := literal(raw, []byte(`"id":`)); ok {
			edits = append(edits, edit{s, e, strconv.AppendUint(nil, ev.FlowID+idOff, 10)})
		}
	}
	if ev.Args.HasCorrelation {
		if s, e, ok := literal(raw, []byte(`"correlation":`)); ok {
			edits = append(edits, edit{s, e, strconv.AppendUint(nil, ev.Args.Correlation+idOff, 10)})
		}
	}
	// Apply in position order.
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && edits[j].start < edits[j-1].start; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	last := 0
	for _, e := range edits {
		dst = append(dst, raw[last:e.start]...)
		dst = append(dst, e.val...)
		last = e.end
	}
	return append(dst, raw[last:]...)
}

// literal finds the number after key in raw.
func literal(raw, key []byte) (int, int, bool) {
	i := bytes.Index(raw, key)
	if i < 0 {
		return 0, 0, false
	}
	s := i + len(key)
	for s < len(raw) && (raw[s] == ' ' || raw[s] == '\n') {
		s++
	}
	e := s
	for e < len(raw) && (raw[e] >= '0' && raw[e] <= '9' || raw[e] == '.' || raw[e] == '-' || raw[e] == 'e' || raw[e] == 'E' || raw[e] == '+') {
		e++
	}
	return s, e, e > s
}
