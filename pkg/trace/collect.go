package trace

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Activity kinds of GPU records.
const (
	kindKernel uint8 = iota
	kindMemcpy
	kindMemset
)

// gpuAct is one kernel/memcpy/memset, kept compact: big traces hold
// millions.
type gpuAct struct {
	ts, end int64
	corr    uint64
	name    uint32
	device  int32
	stream  int32
	kind    uint8
	hasCorr bool
	graph   bool
	launch  bool // joined to a launch call
	gated   bool // eager kernel whose launch came after the GPU went idle
	step    int32
}

// rtCall is a CUDA/HIP runtime or driver call.
type rtCall struct {
	ts, end int64
	corr    uint64
	thread  uint64
	name    uint32
	hasCorr bool
	sync    bool
	graph   bool
}

// cpuOp is a CPU operator or annotation (for attributing GPU bubbles).
type cpuOp struct {
	ts, end int64
	thread  uint64
	name    uint32
	top     bool
}

// stepAnn is a step[...] annotation.
type stepAnn struct {
	ts, end int64
	thread  uint64
	mode    string
	bs      int
	toks    int
}

// nameTable interns names.
type nameTable struct {
	idx   map[string]uint32
	names []string
}

func newNameTable() *nameTable { return &nameTable{idx: map[string]uint32{}} }

func (t *nameTable) id(raw []byte, escaped bool) uint32 {
	if !escaped {
		if i, ok := t.idx[string(raw)]; ok {
			return i
		}
	}
	s := string(raw)
	if escaped {
		s = unescape(raw)
		if i, ok := t.idx[s]; ok {
			return i
		}
	}
	i := uint32(len(t.names))
	t.idx[s] = i
	t.names = append(t.names, s)
	return i
}

// collector gathers one rank's events in one pass.
type collector struct {
	label   string
	rank    Rank
	file    string
	base    int64
	hasBase bool
	dist    *DistributedInfo
	devs    []DeviceProperties

	total    int64
	byPh     map[string]int64
	byCat    map[string]int64
	names    *nameTable
	gpu      []gpuAct
	calls    []rtCall
	ops      []cpuOp
	steps    []stepAnn
	minTs    int64
	maxEnd   int64
	hasTime  bool
	python   int64
	flows    int64
	overhead int64
}

func newCollector(label string, rank Rank, file string) *collector {
	return &collector{label: label, rank: rank, file: file, byPh: map[string]int64{}, byCat: map[string]int64{}, names: newNameTable()}
}

func threadKey(pid, tid ID) uint64 {
	if pid.IsNum && tid.IsNum {
		return uint64(pid.Num)<<32 ^ uint64(uint32(tid.Num))
	}
	h := fnv.New64a()
	h.Write(pid.Raw)
	h.Write([]byte{0})
	h.Write(tid.Raw)
	return h.Sum64() | 1<<63
}

var (
	catKernel       = []byte("kernel")
	catKernelOld    = []byte("Kernel")
	catMemcpy       = []byte("gpu_memcpy")
	catMemcpyOld    = []byte("Memcpy")
	catMemset       = []byte("gpu_memset")
	catMemsetOld    = []byte("Memset")
	catPython       = []byte("python_function")
	catCPUOp        = []byte("cpu_op")
	catOperatorOld  = []byte("Operator")
	catUserAnn      = []byte("user_annotation")
	catOverhead     = []byte("overhead")
	stepPrefix      = []byte("step[")
	graphLaunchName = []byte("GraphLaunch")
	synchronizeName = []byte("Synchronize")
)

var stepRe = regexp.MustCompile(`^step\[([A-Za-z_0-9]+)((?:\s+[A-Za-z_0-9]+=[^\s\]]*)*)\s*\]`)

// parseStepName parses "step[EXTEND bs=8 toks=4096]".
func parseStepName(name string) (mode string, bs, toks int, ok bool) {
	m := stepRe.FindStringSubmatch(name)
	if m == nil {
		return "", 0, 0, false
	}
	mode = m[1]
	for _, kv := range strings.Fields(m[2]) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		switch k {
		case "bs":
			bs = n
		case "toks":
			toks = n
		}
	}
	return mode, bs, toks, true
}

func isRuntimeCat(cat []byte) bool {
	return bytes.HasSuffix(cat, []byte("_runtime")) || bytes.HasSuffix(cat, []byte("_driver")) || bytes.Equal(cat, []byte("Runtime"))
}

// add records one event; ts are made absolute with the file's base.
func (c *collector) add(ev *Event, base int64) {
	c.total++
	var phb [1]byte
	phb[0] = ev.Ph
	ph := phb[:]
	if ev.Ph == 0 {
		ph = nil
	}
	if n, ok := c.byPh[string(ph)]; ok {
		c.byPh[string(ph)] = n + 1
	} else {
		c.byPh[string(ph)] = 1
	}
	if n, ok := c.byCat[string(ev.Cat)]; ok {
		c.byCat[string(ev.Cat)] = n + 1
	} else {
		c.byCat[string(ev.Cat)] = 1
	}
	switch ev.Ph {
	case 's', 'f', 't':
		c.flows++
		return
	case 'X':
	default:
		return
	}
	if !ev.HasTs {
		return
	}
	ts := ev.Ts + base
	end := ts + max(ev.Dur, 0)
	cat := ev.Cat
	if !bytes.Equal(cat, []byte("Trace")) {
		if !c.hasTime || ts < c.minTs {
			c.minTs = ts
		}
		if !c.hasTime || end > c.maxEnd {
			c.maxEnd = end
		}
		c.hasTime = true
	}
	switch {
	case bytes.Equal(cat, catPython):
		c.python++
	case bytes.Equal(cat, catKernel) || bytes.Equal(cat, catKernelOld):
		c.addGPU(ev, ts, end, kindKernel)
	case bytes.Equal(cat, catMemcpy) || bytes.Equal(cat, catMemcpyOld):
		c.addGPU(ev, ts, end, kindMemcpy)
	case bytes.Equal(cat, catMemset) || bytes.Equal(cat, catMemsetOld):
		c.addGPU(ev, ts, end, kindMemset)
	case isRuntimeCat(cat):
		call := rtCall{ts: ts, end: end, corr: ev.Args.Correlation, hasCorr: ev.Args.HasCorrelation, thread: threadKey(ev.Pid, ev.Tid)}
		call.name = c.names.id(ev.NameRaw, ev.nameEscaped)
		call.graph = bytes.Contains(ev.NameRaw, graphLaunchName)
		call.sync = bytes.Contains(ev.NameRaw, synchronizeName) || (bytes.HasSuffix(ev.NameRaw, []byte("Memcpy")))
		if call.hasCorr || call.sync {
			c.calls = append(c.calls, call)
		}
	case bytes.Equal(cat, catUserAnn):
		if bytes.HasPrefix(ev.NameRaw, stepPrefix) {
			if mode, bs, toks, ok := parseStepName(ev.Name()); ok {
				c.steps = append(c.steps, stepAnn{ts: ts, end: end, thread: threadKey(ev.Pid, ev.Tid), mode: mode, bs: bs, toks: toks})
				return
			}
		}
		c.ops = append(c.ops, cpuOp{ts: ts, end: end, thread: threadKey(ev.Pid, ev.Tid), name: c.names.id(ev.NameRaw, ev.nameEscaped)})
	case bytes.Equal(cat, catCPUOp) || bytes.Equal(cat, catOperatorOld):
		c.ops = append(c.ops, cpuOp{ts: ts, end: end, thread: threadKey(ev.Pid, ev.Tid), name: c.names.id(ev.NameRaw, ev.nameEscaped)})
	case bytes.Equal(cat, catOverhead):
		c.overhead += max(ev.Dur, 0)
	}
}

func (c *collector) addGPU(ev *Event, ts, end int64, kind uint8) {
	a := gpuAct{ts: ts, end: end, kind: kind, corr: ev.Args.Correlation, hasCorr: ev.Args.HasCorrelation, step: -1}
	switch {
	case ev.Args.HasDevice:
		a.device = int32(ev.Args.Device)
	case ev.Pid.IsNum:
		a.device = int32(ev.Pid.Num)
	}
	switch {
	case ev.Args.HasStream:
		a.stream = int32(ev.Args.Stream)
	case ev.Tid.IsNum:
		a.stream = int32(ev.Tid.Num)
	}
	a.graph = ev.Args.HasGraphID && ev.Args.GraphID != 0
	a.name = c.names.id(ev.NameRaw, ev.nameEscaped)
	c.gpu = append(c.gpu, a)
}

var labelPidRe = regexp.MustCompile(`^\[((?:TP|DP|PP|EP)\d+(?:-(?:TP|DP|PP|EP)\d+)*|Unknown(?:#\d+)?)\] `)

// rankFromLabel parses a merged trace's "[TP01-DP00]" label.
func rankFromLabel(label string) Rank {
	var r Rank
	for _, m := range regexp.MustCompile(`(TP|DP|PP|EP)(\d+)`).FindAllStringSubmatch(label, -1) {
		v, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "TP":
			r.TP, r.HasTP = v, true
		case "DP":
			r.DP, r.HasDP = v, true
		case "PP":
			r.PP, r.HasPP = v, true
		case "EP":
			r.EP, r.HasEP = v, true
		}
	}
	return r
}

// collectFile reads one trace file. A merged trace (pids labelled
// "[TP01] 123") is split back into its ranks.
func collectFile(ctx context.Context, f RankFile, label string) ([]*collector, error) {
	r, err := Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = r.Close() }()
	cols, err := collect(ctx, r, f, label)
	if err != nil {
		return nil, fmt.Errorf("analyze trace %s: %w", f.Path, err)
	}
	return cols, nil
}

func collect(ctx context.Context, r *Reader, f RankFile, label string) ([]*collector, error) {
	main := newCollector(label, f.Rank, f.Path)
	var split map[string]*collector
	var order []*collector
	var base int64
	started := false
	var lastLabel []byte
	var lastCol *collector
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if !started {
			h := r.Header()
			base = h.BaseTimeNanoseconds
			main.base, main.hasBase = h.BaseTimeNanoseconds, h.HasBaseTime
			main.dist, main.devs = h.DistributedInfo, h.DeviceProperties
			started = true
		}
		if r.events&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		col := main
		if !ev.Pid.IsNum && len(ev.Pid.Raw) > 0 && ev.Pid.Raw[0] == '[' {
			// Merged trace: route by label and strip it from the pid.
			if end := bytes.Index(ev.Pid.Raw, []byte("] ")); end > 0 {
				lbl := ev.Pid.Raw[:end+1]
				if lastCol != nil && bytes.Equal(lbl, lastLabel) {
					col = lastCol
				} else if labelPidRe.Match(ev.Pid.Raw) {
					if split == nil {
						split = map[string]*collector{}
					}
					c, ok := split[string(lbl)]
					if !ok {
						c = newCollector(string(lbl), rankFromLabel(string(lbl)), f.Path)
						c.base, c.hasBase = main.base, main.hasBase
						c.devs = main.devs
						split[string(lbl)] = c
						order = append(order, c)
					}
					col = c
					lastLabel = append(lastLabel[:0], lbl...)
					lastCol = c
				}
				if col != main {
					rest := ev.Pid.Raw[end+2:]
					ev.Pid.Raw = rest
					ev.Pid.Num, ev.Pid.IsNum = parseInt(rest)
				}
			}
		}
		col.add(ev, base)
	}
	if h := r.Header(); h.HasBaseTime && !main.hasBase {
		// baseTimeNanoseconds came after traceEvents: apply it now.
		main.base, main.hasBase = h.BaseTimeNanoseconds, true
		main.shift(h.BaseTimeNanoseconds)
		for _, c := range order {
			c.base, c.hasBase = h.BaseTimeNanoseconds, true
			c.shift(h.BaseTimeNanoseconds)
		}
	}
	if split == nil {
		return []*collector{main}, nil
	}
	// Events without a label (rare) stay with the first rank.
	if main.total > 0 && len(order) > 0 {
		mergeInto(order[0], main)
	}
	return order, nil
}

// shift adds d to every time the collector holds.
func (c *collector) shift(d int64) {
	for i := range c.gpu {
		c.gpu[i].ts += d
		c.gpu[i].end += d
	}
	for i := range c.calls {
		c.calls[i].ts += d
		c.calls[i].end += d
	}
	for i := range c.ops {
		c.ops[i].ts += d
		c.ops[i].end += d
	}
	for i := range c.steps {
		c.steps[i].ts += d
		c.steps[i].end += d
	}
	if c.hasTime {
		c.minTs += d
		c.maxEnd += d
	}
}

// mergeInto moves src's unlabelled events into dst.
func mergeInto(dst, src *collector) {
	remap := make([]uint32, len(src.names.names))
	for i, n := range src.names.names {
		remap[i] = dst.names.id([]byte(n), false)
	}
	for _, a := range src.gpu {
		a.name = remap[a.name]
		dst.gpu = append(dst.gpu, a)
	}
	for _, c := range src.calls {
		c.name = remap[c.name]
		dst.calls = append(dst.calls, c)
	}
	for _, o := range src.ops {
		o.name = remap[o.name]
		dst.ops = append(dst.ops, o)
	}
	dst.steps = append(dst.steps, src.steps...)
	dst.total += src.total
	for k, v := range src.byPh {
		dst.byPh[k] += v
	}
	for k, v := range src.byCat {
		dst.byCat[k] += v
	}
	dst.python += src.python
	dst.flows += src.flows
	dst.overhead += src.overhead
	if src.hasTime {
		if !dst.hasTime || src.minTs < dst.minTs {
			dst.minTs = src.minTs
		}
		if !dst.hasTime || src.maxEnd > dst.maxEnd {
			dst.maxEnd = src.maxEnd
		}
		dst.hasTime = true
	}
}
