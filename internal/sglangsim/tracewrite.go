package sglangsim

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// deviceProps are an H200's properties as torch reports them (the shared
// h200 fixtures were recorded on such a host).
const deviceProps = `      "name": "NVIDIA H200", "totalGlobalMem": 150109880320,
      "computeMajor": 9, "computeMinor": 0,
      "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
      "regsPerBlock": 65536, "warpSize": 32,
      "sharedMemPerBlock": 49152, "numSms": 132
    , "regsPerMultiprocessor": 65536, "sharedMemPerBlockOptin": 232448, "sharedMemPerMultiprocessor": 233472`

// writeTrace renders one rank's Kineto trace in the layout of
// libkineto's ChromeTraceLogger and returns the number of traceEvents.
func writeTrace(w io.Writer, sp traceSpec) (int, error) {
	g := buildTrace(&sp)
	bw := bufio.NewWriterSize(w, 256<<10)
	jw := &jsonw{w: bw}

	jw.s("\n  {\n    \"schemaVersion\": 1,\n    \"deviceProperties\": [\n")
	for i := 0; i < sp.nodeGPUs; i++ {
		if i > 0 {
			jw.s(",\n")
		}
		jw.f("    {\n      \"id\": %d,", i)
		jw.s(strings.TrimPrefix(deviceProps, "     "))
		jw.s("\n    }")
	}
	jw.s("\n    ],\n")
	jw.f("      \"trace_id\": \"%016X%016X\",\n", mix(uint64(sp.seed)^uint64(sp.start.UnixNano())), mix(uint64(sp.globalRank)+uint64(sp.start.UnixNano())))
	if sp.withStack {
		jw.s("      \"with_stack\": 1,\n")
	}
	if sp.recordShape {
		jw.s("      \"record_shapes\": 1,\n")
	}
	jw.f("      \"distributedInfo\": {\"backend\": \"nccl\", \"rank\": %d, \"world_size\": %d, \"pg_count\": 3, \"pg_config\": [", sp.groupRank, sp.worldSize)
	all := make([]string, sp.worldSize)
	for i := range all {
		all[i] = strconv.Itoa(i)
	}
	jw.f("{\"pg_name\": \"0\", \"pg_desc\": \"default_pg\", \"backend_config\": \"cuda:nccl\", \"pg_size\": %d, \"ranks\": [%s]}", sp.worldSize, strings.Join(all, ", "))
	jw.f(", {\"pg_name\": \"1\", \"pg_desc\": \"undefined\", \"backend_config\": \"cuda:nccl\", \"pg_size\": %d, \"ranks\": %s}", sp.tpSize, (&gen{sp: &sp}).groupRanks())
	jw.f(", {\"pg_name\": \"2\", \"pg_desc\": \"undefined\", \"backend_config\": \"cpu:gloo,cuda:gloo\", \"pg_size\": %d, \"ranks\": %s}", sp.tpSize, (&gen{sp: &sp}).groupRanks())
	jw.f("], \"nccl_version\": \"%s\"},\n", sp.ncclVersion)
	jw.s("      \"cuda_driver_version\": 13000,\n      \"cuda_runtime_version\": 13000,\n      \"cupti_version\": 130001,\n")
	jw.s("  \"displayTimeUnit\": \"ms\",\n")
	jw.f("  \"baseTimeNanoseconds\": %d,\n", g.base)
	jw.s("  \"traceEvents\": [\n")

	n := 0
	sep := func() {
		if n > 0 {
			jw.s(",\n")
		}
		n++
	}
	idx := 0
	for i := range g.cpu {
		sep()
		g.cpu[i].evIdx = idx
		idx++
		jw.cpuOp(&g.cpu[i])
	}
	for i := range g.py {
		sep()
		g.py[i].evIdx = idx
		idx++
		jw.python(&g.py[i])
	}
	for i := range g.act {
		sep()
		jw.activity(&g.act[i])
	}
	for i := range g.gpuAnn {
		sep()
		e := &g.gpuAnn[i]
		jw.head(e)
		jw.f("    \"args\": {\n      \"External id\": %d\n    }\n  }", e.ext)
	}
	meta := g.rel(sp.start)
	metaEv := func(name string, pid any, tid int, args string) {
		sep()
		jw.s("  {\n    \"name\": \"" + name + "\", \"ph\": \"M\", \"ts\": ")
		jw.ts(meta)
		jw.s(", \"pid\": ")
		jw.any(pid)
		jw.f(", \"tid\": %d,\n    \"args\": {\n      %s\n    }\n  }", tid, args)
	}
	metaEv("process_name", sp.pid, 0, `"name": "python3"`)
	metaEv("process_labels", sp.pid, 0, `"labels": "CPU"`)
	metaEv("process_sort_index", sp.pid, 0, fmt.Sprintf(`"sort_index": %d`, sp.pid))
	for d := 0; d < 16; d++ {
		metaEv("process_name", d, 0, `"name": "python3"`)
		metaEv("process_labels", d, 0, fmt.Sprintf(`"labels": "GPU %d"`, d))
		metaEv("process_sort_index", d, 0, fmt.Sprintf(`"sort_index": %d`, 5000000+d))
	}
	metaEv("thread_name", sp.device, cudaStreamID, fmt.Sprintf(`"name": "stream %d "`, cudaStreamID))
	metaEv("thread_sort_index", sp.device, cudaStreamID, fmt.Sprintf(`"sort_index": %d`, cudaStreamID))
	metaEv("thread_name", sp.pid, sp.pid, fmt.Sprintf(`"name": "thread %d (python3)"`, sp.pid))
	metaEv("thread_sort_index", sp.pid, sp.pid, fmt.Sprintf(`"sort_index": %d`, sp.pid))

	start, stop := g.rel(sp.start), g.rel(sp.stop)
	sep()
	jw.s("  {\n    \"ph\": \"X\", \"cat\": \"Trace\", \"ts\": ")
	jw.ts(start)
	jw.s(", \"dur\": ")
	jw.ts(max(stop-start, 0))
	jw.s(",\n    \"pid\": \"Spans\", \"tid\": \"PyTorch Profiler\",\n    \"name\": \"PyTorch Profiler (0)\",\n    \"args\": {\n      \"Op count\": 0\n    }\n  }")
	sep()
	jw.s("  {\n    \"name\": \"process_sort_index\", \"ph\": \"M\", \"ts\": ")
	jw.ts(start)
	jw.s(",\n    \"pid\": \"Spans\", \"tid\": 0,\n    \"args\": {\n      \"sort_index\": 536870912\n    }\n  }")
	sep()
	jw.s("  {\n    \"name\": \"Iteration Start: PyTorch Profiler\", \"ph\": \"i\", \"s\": \"g\",\n    \"pid\": \"Traces\", \"tid\": \"Trace PyTorch Profiler\", \"ts\": ")
	jw.ts(start)
	jw.s("\n  }")
	sep()
	jw.s("  {\n    \"name\": \"Record Window End\", \"ph\": \"i\", \"s\": \"g\",\n    \"pid\": \"\", \"tid\": \"\", \"ts\": ")
	jw.ts(stop)
	jw.s("\n  }\n  ],\n  \"traceName\": ")
	jw.str(sp.traceName)
	jw.s("\n}\n")
	if jw.err != nil {
		return n, jw.err
	}
	return n, bw.Flush()
}

// jsonw writes Kineto's JSON by hand: torch does not escape '<', '>' or '&'
// in names the way encoding/json does, and timestamps must keep exactly
// three fraction digits.
type jsonw struct {
	w   *bufio.Writer
	err error
	buf []byte
}

func (j *jsonw) s(s string) {
	if j.err == nil {
		_, j.err = j.w.WriteString(s)
	}
}

func (j *jsonw) f(format string, args ...any) {
	if j.err == nil {
		_, j.err = fmt.Fprintf(j.w, format, args...)
	}
}

// ts writes nanoseconds as microseconds with three decimals.
func (j *jsonw) ts(ns int64) {
	if ns < 0 {
		ns = 0
	}
	j.buf = strconv.AppendInt(j.buf[:0], ns/1000, 10)
	frac := ns % 1000
	j.buf = append(j.buf, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	if j.err == nil {
		_, j.err = j.w.Write(j.buf)
	}
}

func (j *jsonw) str(s string) {
	j.buf = append(j.buf[:0], '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			j.buf = append(j.buf, '\\', c)
		case c < 0x20:
			j.buf = append(j.buf, fmt.Sprintf(`\u%04x`, c)...)
		default:
			j.buf = append(j.buf, c)
		}
	}
	j.buf = append(j.buf, '"')
	if j.err == nil {
		_, j.err = j.w.Write(j.buf)
	}
}

func (j *jsonw) any(v any) {
	switch x := v.(type) {
	case string:
		j.str(x)
	default:
		j.f("%v", x)
	}
}

func (j *jsonw) head(e *ev) {
	j.s("  {\n    \"ph\": \"X\", \"cat\": \"")
	j.s(catNames[e.cat])
	j.s("\", \"name\": ")
	j.str(e.name)
	j.f(", \"pid\": %d, \"tid\": %d,\n    \"ts\": ", e.pid, e.tid)
	j.ts(e.ts)
	j.s(", \"dur\": ")
	j.ts(e.dur)
	j.s(",\n")
}

func (j *jsonw) cpuOp(e *ev) {
	j.head(e)
	j.f("    \"args\": {\n      \"External id\": %d,\"Record function id\": 0", e.ext)
	if e.coll != nil {
		c := e.coll
		j.f(", \"Collective name\": \"%s\", \"Process Group Description\": \"undefined\", \"dtype\": \"BFloat16\", \"Rank\": 0, \"Out msg nelems\": %d, \"Process Group Name\": \"1\", \"Global rank stride\": 1, \"Out split size\": \"[]\", \"In split size\": \"[]\", \"Process Group Ranks\": \"%s\", \"Group size\": %d, \"In msg nelems\": %d",
			c.name, c.nelems, c.ranks, c.group, c.nelems)
	}
	if e.shapes != "" {
		j.s(", ")
		j.s(e.shapes)
	}
	j.f(", \"Ev Idx\": %d\n    }\n  }", e.evIdx)
}

func (j *jsonw) python(e *ev) {
	j.head(e)
	j.s("    \"args\": {\n      \"Python parent id\": ")
	if e.pyParent == 0 {
		j.s("null")
	} else {
		j.f("%d", e.pyParent)
	}
	j.f(", \"Python id\": %d, \"Ev Idx\": %d\n    }\n  }", e.pyID, e.evIdx)
}

func (j *jsonw) activity(e *ev) {
	switch e.cat {
	case catFlowS, catFlowF:
		ph := "f"
		if e.cat == catFlowS {
			ph = "s"
		}
		j.f("  {\n    \"ph\": \"%s\", \"id\": %d, \"pid\": %d, \"tid\": %d, \"ts\": ", ph, e.corr, e.pid, e.tid)
		j.ts(e.ts)
		if e.cat == catFlowS {
			j.s(",\n    \"cat\": \"ac2g\", \"name\": \"ac2g\"\n  }")
		} else {
			j.s(",\n    \"cat\": \"ac2g\", \"name\": \"ac2g\", \"bp\": \"e\"\n  }")
		}
	case catOverhead:
		j.s("  {\n    \"ph\": \"X\", \"cat\": \"overhead\", \"name\": ")
		j.str(e.name)
		j.f(", \"pid\": %d, \"tid\": %d,\n    \"ts\": ", e.pid, e.tid)
		j.ts(e.ts)
		j.s(", \"dur\": ")
		j.ts(e.dur)
		j.s("\n  }")
	case catRuntime, catDriver:
		j.head(e)
		j.s("    \"args\": {\n      ")
		if e.ext != 0 {
			j.f("\"External id\": %d,      ", e.ext)
		} else {
			j.s("      ")
		}
		j.f("\"cbid\": %d, \"correlation\": %d\n    }\n  }", e.cbid, e.corr)
	case catKernel:
		k := e.k
		j.head(e)
		j.s("    \"args\": {\n      ")
		if e.ext != 0 {
			j.f("\"External id\": %d,", e.ext)
		}
		j.f("      \"queued\": 0, \"device\": %d, \"context\": 1,      \"stream\": %d, \"correlation\": %d,      \"registers per thread\": %d,      \"shared memory\": %d,      \"blocks per SM\": %s,      \"warps per SM\": %s,      \"grid\": [%d, %d, %d],      \"block\": [%d, %d, %d],      \"est. achieved occupancy %%\": %d",
			e.pid, e.tid, e.corr, k.regs, k.smem, fmtRatio(k.blocksPerSM), fmtRatio(k.warpsPerSM), e.grid[0], e.grid[1], e.grid[2], k.block[0], k.block[1], k.block[2], k.occupancy)
		if c := e.coll; c != nil {
			j.f(", \"Collective name\": \"%s\", \"In msg nelems\": %d, \"Out msg nelems\": %d, \"Group size\": %d, \"dtype\": \"BFloat16\", \"In split size\": \"[]\", \"Out split size\": \"[]\", \"Process Group Name\": \"1\", \"Process Group Description\": \"undefined\", \"Process Group Ranks\": \"%s\"",
				c.name, c.nelems, c.nelems, c.group, c.ranks)
		}
		j.s("\n    }\n  }")
	case catMemcpy, catMemset:
		j.head(e)
		j.s("    \"args\": {\n      ")
		if e.ext != 0 {
			j.f("\"External id\": %d,", e.ext)
		}
		bw := float64(e.bytes) / float64(max(e.dur, 1))
		j.f("      \"device\": %d, \"context\": 1,      \"stream\": %d, \"correlation\": %d,      \"bytes\": %d, \"memory bandwidth (GB/s)\": %s\n    }\n  }",
			e.pid, e.tid, e.corr, e.bytes, strconv.FormatFloat(bw, 'g', -1, 64))
	}
}

func fmtRatio(f float64) string {
	if f == float64(int64(f)) {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 6, 64)
}
