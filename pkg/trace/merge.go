package trace

import (
	"bufio"
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
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
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
	// Level is the gzip level for .gz outputs; 0 means gzip.BestSpeed.
	Level int
	// Concurrency is the number of compression goroutines; 0 means GOMAXPROCS.
	Concurrency int
	// Progress, when set, is called after each input file.
	Progress func(MergeProgress)
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
// into the file out, atomically.
func MergeFiles(ctx context.Context, files []RankFile, out string, opts MergeOptions) (res *MergeResult, err error) {
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
	var w io.Writer = cw
	var zw *pgzip.Writer
	if strings.HasSuffix(out, ".gz") {
		level := opts.Level
		if level == 0 {
			level = gzip.BestSpeed
		}
		zw, err = pgzip.NewWriterLevel(cw, level)
		if err != nil {
			return nil, fmt.Errorf("merge output %s: gzip level %d: %w", out, level, errdefs.ErrInvalidArgument)
		}
		conc := opts.Concurrency
		if conc <= 0 {
			conc = runtime.GOMAXPROCS(0)
		}
		if err := zw.SetConcurrency(1<<20, 2*conc); err != nil {
			return nil, fmt.Errorf("merge output %s: %w", out, err)
		}
		w = zw
	}
	res, err = Merge(ctx, files, w, opts)
	if err != nil {
		if zw != nil {
			_ = zw.Close()
		}
		return nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("compress merge output %s: %w", out, err)
		}
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
	res.Path = out
	res.OutputBytes = cw.n
	return res, nil
}

// Merge streams files into one Chrome-trace JSON document written to w
// (uncompressed). Each input event is copied once, with only its pid (made
// "<rank label> <pid>"), ts (shifted onto a common baseTimeNanoseconds), flow
// id (namespaced per rank) and process_sort_index (rank-major) rewritten;
// memory stays bounded by the largest single event.
func Merge(ctx context.Context, files []RankFile, w io.Writer, opts MergeOptions) (*MergeResult, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("merge: no trace files given: %w", errdefs.ErrInvalidArgument)
	}
	m := &merger{bw: bufio.NewWriterSize(w, 256<<10), res: &MergeResult{}, labelOrd: map[string]int{}}
	headers := make([]*Header, len(files))
	for i, f := range files {
		h, err := readHeader(f.Path)
		if err != nil {
			return nil, err
		}
		headers[i] = h
	}
	// Output base: the earliest origin, so every shift is >= 0.
	base, anyBase := int64(0), false
	for _, h := range headers {
		if h.HasBaseTime && (!anyBase || h.BaseTimeNanoseconds < base) {
			base = h.BaseTimeNanoseconds
		}
		anyBase = anyBase || h.HasBaseTime
	}
	for _, h := range headers {
		if !h.HasBaseTime {
			base = 0 // a file without a base holds absolute times
		}
	}
	m.res.BaseTimeNanoseconds = base
	labels := fileLabels(files)
	for i, f := range files {
		mf := MergedFile{Path: f.Path, Label: labels[i], Rank: f.Rank, BaseTimeNanoseconds: headers[i].BaseTimeNanoseconds}
		mf.ShiftNs = headers[i].BaseTimeNanoseconds - base
		m.res.Files = append(m.res.Files, mf)
		if _, ok := m.labelOrd[mf.Label]; !ok {
			m.labelOrd[mf.Label] = len(m.labelOrd)
		}
	}
	if err := m.writeHeader(headers, anyBase); err != nil {
		return nil, err
	}
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := m.copyFile(ctx, i, f); err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(MergeProgress{File: f.Path, Done: i + 1, Total: len(files), Events: m.res.Files[i].Events})
		}
	}
	if err := m.writeMissingSortIndexes(); err != nil {
		return nil, err
	}
	if err := m.writeTrailer(headers); err != nil {
		return nil, err
	}
	if err := m.bw.Flush(); err != nil {
		return nil, fmt.Errorf("write merge output: %w", err)
	}
	return m.res, nil
}

func readHeader(path string) (*Header, error) {
	r, err := Open(path)
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
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("trace %s: %w", path, err)
			}
		}
	}
	return r.Header(), nil
}

type merger struct {
	bw      *bufio.Writer
	res     *MergeResult
	first   bool
	scratch []byte
	written map[string]bool
	// labelOrd is the sort band of each process label: files of one rank
	// (its EXTEND and DECODE stages) share a label and so a band.
	labelOrd map[string]int
	// pids per input file: raw pid -> has a process_sort_index event.
	pids []map[string]bool
	// pidOrder keeps first-seen order for deterministic output.
	pidOrder [][]string
}

type replacement struct {
	s    span
	kind byte
}

func (m *merger) writeHeader(headers []*Header, anyBase bool) error {
	bw := m.bw
	bw.WriteString("{\n")
	written := map[string]bool{"traceEvents": true}
	var devs []json.RawMessage
	for _, h := range headers {
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
	for _, h := range headers {
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
				writeKey(k.Name, strconv.AppendInt(nil, m.res.BaseTimeNanoseconds, 10))
			default:
				writeKey(k.Name, k.Value)
			}
		}
	}
	if anyBase && !written["baseTimeNanoseconds"] {
		written["baseTimeNanoseconds"] = true
		writeKey("baseTimeNanoseconds", strconv.AppendInt(nil, m.res.BaseTimeNanoseconds, 10))
	}
	info := struct {
		Version int          `json:"version"`
		Files   []MergedFile `json:"files"`
	}{1, m.res.Files}
	v, _ := json.Marshal(info)
	writeKey("sglangdMerge", v)
	written["sglangdMerge"] = true
	m.written = written
	_, err := bw.WriteString("\"traceEvents\": [\n")
	m.first = true
	return err
}

func (m *merger) writeTrailer(headers []*Header) error {
	bw := m.bw
	bw.WriteString("\n]")
	for _, h := range headers {
		for _, k := range h.Keys {
			if m.written[k.Name] {
				continue
			}
			m.written[k.Name] = true
			kb, _ := json.Marshal(k.Name)
			bw.WriteString(",\n")
			bw.Write(kb)
			bw.WriteString(": ")
			bw.Write(k.Value)
		}
	}
	_, err := bw.WriteString("\n}\n")
	return err
}

func (m *merger) sep() {
	if m.first {
		m.first = false
		return
	}
	m.bw.WriteString(",\n")
}

var processSortIndex = []byte("process_sort_index")

func isFlowPhase(ph byte) bool {
	switch ph {
	case 's', 't', 'f', 'b', 'e', 'n':
		return true
	}
	return false
}

func (m *merger) copyFile(ctx context.Context, idx int, f RankFile) error {
	r, err := Open(f.Path)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	r.skipArgs = true
	mf := &m.res.Files[idx]
	label := mf.Label
	shift := mf.ShiftNs
	ord := uint64(idx)
	pids := map[string]bool{}
	var order []string
	bw := m.bw
	var reps [4]replacement
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("merge: trace %s: %w", f.Path, err)
		}
		if mf.Events&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		mf.Events++
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
		m.sep()
		if n == 0 {
			bw.Write(ev.Raw)
			continue
		}
		rs := reps[:n]
		slices.SortFunc(rs, func(a, b replacement) int { return int(a.s.start - b.s.start) })
		last := int32(0)
		for _, rp := range rs {
			bw.Write(ev.Raw[last:rp.s.start])
			sc := m.scratch[:0]
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
				sc = strconv.AppendInt(sc, sortIndexFor(m.labelOrd[label], ev.Args.SortIndex), 10)
			}
			bw.Write(sc)
			m.scratch = sc
			last = rp.s.end
		}
		bw.Write(ev.Raw[last:])
	}
	mf.Bytes = r.Offset()
	m.res.InputEvents += mf.Events
	m.pids = append(m.pids, pids)
	m.pidOrder = append(m.pidOrder, order)
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

// writeMissingSortIndexes adds process_sort_index events for processes
// without one (files lacking metadata), so every rank sorts in order.
func (m *merger) writeMissingSortIndexes() error {
	for i, order := range m.pidOrder {
		label := m.res.Files[i].Label
		for _, pid := range order {
			if m.pids[i][pid] {
				continue
			}
			local := int64(1)<<sortShift - 1
			if n, ok := parseInt([]byte(pid)); ok {
				local = n
			}
			m.sep()
			sc := append(m.scratch[:0], `{"name": "process_sort_index", "ph": "M", "ts": 0, "pid": "`...)
			sc = append(sc, label...)
			sc = append(sc, ' ')
			sc = append(sc, pid...)
			sc = append(sc, `", "tid": 0, "args": {"sort_index": `...)
			sc = strconv.AppendInt(sc, sortIndexFor(m.labelOrd[label], local), 10)
			sc = append(sc, "}}"...)
			m.bw.Write(sc)
			m.scratch = sc
			m.res.AddedEvents++
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
