package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/flate"
	"golang.org/x/sync/errgroup"
)

// sortShift spaces the ranks' process sort indexes: rank ordinal << 26 plus
// the process's own index (Kineto uses the OS pid for CPU processes and
// 0x1000000+device or 5000000+device for GPUs, all below 2^26), so every
// process of a rank sorts after those of earlier ranks and the sum stays an
// exact integer in JavaScript viewers.
const sortShift = 26

// flowShift namespaces flow ids: rank ordinal << 40 is added to ids below
// 2^40 (CUPTI correlation ids are 32-bit), keeping them distinct across
// ranks and below 2^53.
const flowShift = 40

// MergeOptions tunes Merge.
type MergeOptions struct {
	// Profile selects a profile when a directory holds several (see
	// DiscoverOptions.Profile).
	Profile string
	// Level is the gzip level for .gz outputs (-2 to 9); 0 means BestSpeed.
	Level int
	// Concurrency is how many input files are read at once and, for .gz
	// outputs, how many ranks are rewritten and compressed in parallel,
	// each on two or three cores with 3 to 10 MiB of buffers; 0 means
	// GOMAXPROCS, at most maxMergeConcurrency.
	Concurrency int
	// Progress, when set, is called after each input file, from one
	// goroutine at a time; in a parallel merge files may finish out of
	// order, and Done counts the files finished so far.
	Progress func(MergeProgress)
}

// maxMergeConcurrency caps the default concurrency so that peak memory
// stays well under 200 MB on machines with many cores (eight workers keep
// 16 to 24 cores busy).
const maxMergeConcurrency = 8

func (o *MergeOptions) concurrency() int {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	return max(1, min(runtime.GOMAXPROCS(0), maxMergeConcurrency))
}

// MergeProgress reports a finished input file.
type MergeProgress struct {
	File        string
	Done, Total int
	Events      int64
}

// MergedFile describes one input of a merge.
type MergedFile struct {
	Path  string `json:"path"`
	Label string `json:"label"`
	Rank  Rank   `json:"rank"`
	// Events is the number of input events copied from the file.
	Events int64 `json:"events"`
	// Bytes is the uncompressed size of the file's JSON.
	Bytes int64 `json:"bytes"`
	// BaseTimeNanoseconds is the file's time base (0 when absent).
	BaseTimeNanoseconds int64 `json:"base_time_ns"`
	// ShiftNs was added to every ts of the file to put it on the output base.
	ShiftNs int64 `json:"shift_ns"`
}

// MergeResult summarises a merge.
type MergeResult struct {
	Path  string       `json:"path,omitempty"`
	Files []MergedFile `json:"files"`
	// InputEvents is the sum of Files[].Events; every one is written once.
	InputEvents int64 `json:"input_events"`
	// AddedEvents counts process_sort_index metadata events added for
	// processes that had none, so that ranks sort in order.
	AddedEvents         int   `json:"added_events"`
	BaseTimeNanoseconds int64 `json:"base_time_ns"`
	// OutputBytes is the size written (compressed when gzip).
	OutputBytes int64 `json:"output_bytes"`
}

// MergeDir merges the per-rank traces of dir (see Discover) into out, which
// is gzip-compressed when its name ends in .gz. The file appears complete or
// not at all.
func MergeDir(ctx context.Context, dir, out string, opts MergeOptions) (*MergeResult, error) {
	files, err := Discover(dir, DiscoverOptions{Profile: opts.Profile, Exclude: []string{out}})
	if err != nil {
		return nil, err
	}
	return MergeFiles(ctx, files, out, opts)
}

// MergeFiles merges files (in the given order, which should be rank order)
// into the file out, atomically. A .gz output is written by a parallel
// merge (see writeGzip): one standard gzip member, the same JSON as Merge.
func MergeFiles(ctx context.Context, files []RankFile, out string, opts MergeOptions) (res *MergeResult, err error) {
	gz := strings.HasSuffix(out, ".gz")
	level := opts.Level
	if level == 0 {
		level = flate.BestSpeed
	}
	if gz {
		if _, err := flate.NewWriter(io.Discard, level); err != nil {
			return nil, fmt.Errorf("merge output %s: gzip level %d (want -2 to 9): %w", out, level, errdefs.ErrInvalidArgument)
		}
	}
	p, err := newMergePlan(ctx, files, opts.concurrency())
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create merge output in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	cw := &countingWriter{w: tmp}
	if gz {
		err = p.writeGzip(ctx, cw, dir, level, opts)
	} else {
		err = p.writeSequential(ctx, cw, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("sync merge output %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("close merge output %s: %w", out, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return nil, fmt.Errorf("merge output %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("rename merge output to %s: %w", out, err)
	}
	p.res.Path = out
	p.res.OutputBytes = cw.n
	return p.res, nil
}

// Merge streams files into one Chrome-trace JSON document written to w
// (uncompressed), one file after another. Each input event is copied once,
// with only its pid (made "<rank label> <pid>"), ts (shifted onto a common
// baseTimeNanoseconds), flow id (namespaced per rank) and process_sort_index
// (rank-major) rewritten; memory stays bounded by the largest single event.
func Merge(ctx context.Context, files []RankFile, w io.Writer, opts MergeOptions) (*MergeResult, error) {
	p, err := newMergePlan(ctx, files, opts.concurrency())
	if err != nil {
		return nil, err
	}
	if err := p.writeSequential(ctx, w, opts); err != nil {
		return nil, err
	}
	return p.res, nil
}

// mergePlan is what a merge decides before copying any event: the output
// time base, each file's label, shift and sort band, and the top-level keys.
type mergePlan struct {
	files   []RankFile
	headers []*Header
	anyBase bool
	res     *MergeResult
	// labelOrd is the sort band of each process label: files of one rank
	// (its EXTEND and DECODE stages) share a label and so a band.
	labelOrd map[string]int
	// written holds the top-level keys already written (set by head).
	written map[string]bool
	// readahead decompresses each input on a goroutine of its own (see
	// openTrace); the parallel merge turns it off when its workers already
	// keep every core busy.
	readahead bool
}

func newMergePlan(ctx context.Context, files []RankFile, conc int) (*mergePlan, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("merge: no trace files given: %w", errdefs.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &mergePlan{files: files, headers: make([]*Header, len(files)), res: &MergeResult{}, labelOrd: map[string]int{}}
	// A parallel worker runs decompress+parse (the longer half) and
	// compress on two goroutines. Decompressing on a third (readahead)
	// shortens that critical path when each worker has two cores or more;
	// on fewer every core is busy anyway, and without it decompression
	// costs less CPU and memory.
	p.readahead = 2*min(conc, len(files)) <= runtime.GOMAXPROCS(0)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i, f := range files {
		g.Go(func() error {
			h, err := readHeader(gctx, f.Path, p.readahead)
			p.headers[i] = h
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Output base: the earliest origin, so every shift is >= 0.
	base := int64(0)
	for _, h := range p.headers {
		if h.HasBaseTime && (!p.anyBase || h.BaseTimeNanoseconds < base) {
			base = h.BaseTimeNanoseconds
		}
		p.anyBase = p.anyBase || h.HasBaseTime
	}
	for _, h := range p.headers {
		if !h.HasBaseTime {
			base = 0 // a file without a base holds absolute times
		}
	}
	p.res.BaseTimeNanoseconds = base
	labels := fileLabels(files)
	for i, f := range files {
		mf := MergedFile{Path: f.Path, Label: labels[i], Rank: f.Rank, BaseTimeNanoseconds: p.headers[i].BaseTimeNanoseconds}
		mf.ShiftNs = p.headers[i].BaseTimeNanoseconds - base
		p.res.Files = append(p.res.Files, mf)
		if _, ok := p.labelOrd[mf.Label]; !ok {
			p.labelOrd[mf.Label] = len(p.labelOrd)
		}
	}
	return p, nil
}

func readHeader(ctx context.Context, path string, readahead bool) (*Header, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := openTrace(path, readahead)
	if err != nil {
		return nil, err
	}
	defer func() { _ = r.Close() }()
	if err := r.ReadHeader(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("trace %s: %w", path, err)
	}
	if !r.Header().HasBaseTime {
		// Some writers put baseTimeNanoseconds after traceEvents; the time
		// shift must be known before the first event is copied.
		for n := 1; ; n++ {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("trace %s: %w", path, err)
			}
			if n&0xffff == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
		}
	}
	return r.Header(), nil
}

// record stores what copying file idx produced in the result.
func (p *mergePlan) record(idx int, out *rankOutput) {
	mf := &p.res.Files[idx]
	mf.Events = out.events
	mf.Bytes = out.bytes
	p.res.InputEvents += out.events
}

// writeSequential writes the whole document, uncompressed, to w.
func (p *mergePlan) writeSequential(ctx context.Context, w io.Writer, opts MergeOptions) error {
	p.readahead = true // one file at a time: decompress ahead of the parser
	ew := newEventWriter(func(b []byte) ([]byte, error) {
		_, err := w.Write(b)
		return b[:0], err
	})
	ew.write(p.head())
	outs := make([]rankOutput, len(p.files))
	for i, f := range p.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.copyRank(ctx, i, ew, &outs[i]); err != nil {
			return err
		}
		p.record(i, &outs[i])
		if opts.Progress != nil {
			opts.Progress(MergeProgress{File: f.Path, Done: i + 1, Total: len(p.files), Events: outs[i].events})
		}
	}
	for i := range outs {
		for _, ev := range outs[i].missing {
			ew.sep()
			ew.write(ev)
			p.res.AddedEvents++
		}
	}
	ew.write(p.trailer())
	if err := ew.close(); err != nil {
		return fmt.Errorf("write merge output: %w", err)
	}
	return nil
}

// head returns the document up to and including the opening of
// traceEvents: the inputs' top-level keys (deviceProperties concatenated,
// baseTimeNanoseconds replaced by the output base) and sglangdMerge.
func (p *mergePlan) head() []byte {
	var bw bytes.Buffer
	bw.WriteString("{\n")
	written := map[string]bool{"traceEvents": true}
	var devs []json.RawMessage
	for _, h := range p.headers {
		if v, ok := h.Get("deviceProperties"); ok {
			var d []json.RawMessage
			if json.Unmarshal(v, &d) == nil {
				devs = append(devs, d...)
			}
		}
	}
	writeKey := func(k string, v []byte) {
		kb, _ := json.Marshal(k)
		bw.Write(kb)
		bw.WriteString(": ")
		bw.Write(v)
		bw.WriteString(",\n")
	}
	for _, h := range p.headers {
		for _, k := range h.Keys[:h.BeforeEvents] {
			if written[k.Name] {
				continue
			}
			written[k.Name] = true
			switch k.Name {
			case "deviceProperties":
				v, _ := json.Marshal(devs)
				writeKey(k.Name, v)
			case "baseTimeNanoseconds":
				writeKey(k.Name, strconv.AppendInt(nil, p.res.BaseTimeNanoseconds, 10))
			default:
				writeKey(k.Name, k.Value)
			}
		}
	}
	if p.anyBase && !written["baseTimeNanoseconds"] {
		written["baseTimeNanoseconds"] = true
		writeKey("baseTimeNanoseconds", strconv.AppendInt(nil, p.res.BaseTimeNanoseconds, 10))
	}
	// Written before any file is copied: Events and Bytes are still 0.
	info := struct {
		Version int          `json:"version"`
		Files   []MergedFile `json:"files"`
	}{1, p.res.Files}
	v, _ := json.Marshal(info)
	writeKey("sglangdMerge", v)
	written["sglangdMerge"] = true
	p.written = written
	bw.WriteString("\"traceEvents\": [\n")
	return bw.Bytes()
}

// trailer returns the end of the document after the last event: the keys
// of the headers not written by head, then the closing brace.
func (p *mergePlan) trailer() []byte {
	var bw bytes.Buffer
	bw.WriteString("\n]")
	for _, h := range p.headers {
		for _, k := range h.Keys {
			if p.written[k.Name] {
				continue
			}
			p.written[k.Name] = true
			kb, _ := json.Marshal(k.Name)
			bw.WriteString(",\n")
			bw.Write(kb)
			bw.WriteString(": ")
			bw.Write(k.Value)
		}
	}
	bw.WriteString("\n}\n")
	return bw.Bytes()
}

// chunkSize is the size of the buffers an eventWriter hands on.
const chunkSize = 256 << 10

// eventWriter buffers a merge's output and hands whole chunks to flush,
// which returns an empty buffer to go on with: the parallel merge passes
// chunks to a compressor goroutine without copying them. Errors stick.
type eventWriter struct {
	buf   []byte
	flush func([]byte) ([]byte, error)
	err   error
	// first is true until the first event is written: events are
	// separated by ",\n".
	first bool
}

func newEventWriter(flush func([]byte) ([]byte, error)) *eventWriter {
	return &eventWriter{buf: make([]byte, 0, chunkSize), flush: flush, first: true}
}

func (w *eventWriter) handOff() {
	if w.err != nil {
		w.buf = w.buf[:0]
		return
	}
	w.buf, w.err = w.flush(w.buf)
}

func (w *eventWriter) write(p []byte) {
	if len(w.buf)+len(p) > cap(w.buf) && len(w.buf) > 0 {
		w.handOff()
	}
	w.buf = append(w.buf, p...)
}

func (w *eventWriter) writeString(s string) {
	if len(w.buf)+len(s) > cap(w.buf) && len(w.buf) > 0 {
		w.handOff()
	}
	w.buf = append(w.buf, s...)
}

// sep writes the separator due before an event.
func (w *eventWriter) sep() {
	if w.first {
		w.first = false
		return
	}
	w.writeString(",\n")
}

// close hands on what is buffered and returns the first error.
func (w *eventWriter) close() error {
	if len(w.buf) > 0 {
		w.handOff()
	}
	return w.err
}

type replacement struct {
	s    span
	kind byte
}

var processSortIndex = []byte("process_sort_index")

func isFlowPhase(ph byte) bool {
	switch ph {
	case 's', 't', 'f', 'b', 'e', 'n':
		return true
	}
	return false
}

// rankOutput is what copying one file produced besides its events.
type rankOutput struct {
	events int64
	// bytes is the file's uncompressed JSON size.
	bytes int64
	// missing holds process_sort_index events for the file's processes
	// that had none; they are written after every file's events.
	missing [][]byte
}

// copyRank writes the events of file idx, rewritten, to w, each preceded by
// w.sep(). It only reads p, so files can be copied concurrently.
func (p *mergePlan) copyRank(ctx context.Context, idx int, w *eventWriter, out *rankOutput) error {
	f := p.files[idx]
	r, err := openTrace(f.Path, p.readahead)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	r.skipArgs = true
	mf := &p.res.Files[idx]
	label := mf.Label
	shift := mf.ShiftNs
	band := p.labelOrd[label]
	ord := uint64(idx)
	// pids: raw pid -> has a process_sort_index event; order keeps
	// first-seen order for deterministic output.
	pids := map[string]bool{}
	var order []string
	var reps [4]replacement
	var scratch []byte
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("merge: trace %s: %w", f.Path, err)
		}
		if out.events&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if w.err != nil {
				return w.err
			}
		}
		out.events++
		n := 0
		isSort := ev.Ph == 'M' && ev.sortSpan.ok() && bytes.Equal(ev.NameRaw, processSortIndex)
		if ev.pidSpan.ok() {
			reps[n] = replacement{ev.pidSpan, 'p'}
			n++
			has, seen := pids[string(ev.Pid.Raw)]
			if !seen {
				order = append(order, string(ev.Pid.Raw))
			}
			if !seen || (isSort && !has) {
				pids[string(ev.Pid.Raw)] = has || isSort
			}
		}
		if shift != 0 && ev.tsSpan.ok() {
			reps[n] = replacement{ev.tsSpan, 't'}
			n++
		}
		if ord != 0 && ev.idSpan.ok() && isFlowPhase(ev.Ph) {
			reps[n] = replacement{ev.idSpan, 'i'}
			n++
		}
		if isSort {
			reps[n] = replacement{ev.sortSpan, 's'}
			n++
		}
		w.sep()
		if n == 0 {
			w.write(ev.Raw)
			continue
		}
		rs := reps[:n]
		slices.SortFunc(rs, func(a, b replacement) int { return int(a.s.start - b.s.start) })
		last := int32(0)
		for _, rp := range rs {
			w.write(ev.Raw[last:rp.s.start])
			sc := scratch[:0]
			switch rp.kind {
			case 'p':
				sc = append(sc, '"')
				sc = append(sc, label...)
				sc = append(sc, ' ')
				sc = append(sc, ev.Pid.Raw...)
				sc = append(sc, '"')
			case 't':
				sc = appendMicros(sc, ev.Ts+shift)
			case 'i':
				if ev.HasFlowID && ev.FlowID < 1<<flowShift {
					sc = strconv.AppendUint(sc, ev.FlowID+ord<<flowShift, 10)
				} else {
					raw := bytes.Trim(ev.Raw[rp.s.start:rp.s.end], `"`)
					sc = append(sc, `"r`...)
					sc = strconv.AppendUint(sc, ord, 10)
					sc = append(sc, ':')
					sc = append(sc, raw...)
					sc = append(sc, '"')
				}
			case 's':
				sc = strconv.AppendInt(sc, sortIndexFor(band, ev.Args.SortIndex), 10)
			}
			w.write(sc)
			scratch = sc
			last = rp.s.end
		}
		w.write(ev.Raw[last:])
	}
	out.bytes = r.Offset()
	// process_sort_index events for processes without one (files lacking
	// metadata), so every rank sorts in order.
	for _, pid := range order {
		if pids[pid] {
			continue
		}
		local := int64(1)<<sortShift - 1
		if n, ok := parseInt([]byte(pid)); ok {
			local = n
		}
		ev := append([]byte(nil), `{"name": "process_sort_index", "ph": "M", "ts": 0, "pid": "`...)
		ev = append(ev, label...)
		ev = append(ev, ' ')
		ev = append(ev, pid...)
		ev = append(ev, `", "tid": 0, "args": {"sort_index": `...)
		ev = strconv.AppendInt(ev, sortIndexFor(band, local), 10)
		ev = append(ev, "}}"...)
		out.missing = append(out.missing, ev)
	}
	return nil
}

// fileLabels returns each file's process label: SGLang's rank label, made
// unique ("[Unknown#1]") when two files of the same stage would share it,
// since equal labels put their processes in one namespace.
func fileLabels(files []RankFile) []string {
	seen := map[string]int{}
	labels := make([]string, len(files))
	for i, f := range files {
		l := f.Rank.Label()
		key := l + "\x00" + f.Rank.Stage
		if n := seen[key]; n > 0 {
			l = fmt.Sprintf("%s#%d]", strings.TrimSuffix(l, "]"), n)
		}
		seen[key]++
		labels[i] = l
	}
	return labels
}

// sortIndexFor maps a rank's process sort index into its rank's band.
func sortIndexFor(ordinal int, local int64) int64 {
	const band = int64(1) << sortShift
	local = max(0, min(local, band-1))
	return int64(ordinal)*band + local
}

type countingWriter struct {
	w io.Writer
	n int64
}

// ReadFrom lets io.Copy reach the underlying writer's ReadFrom (a file's
// copy_file_range).
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.w, r)
	c.n += n
	return n, err
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
