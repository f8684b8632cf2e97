package sglangsim

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sglangd/sglangd/internal/testutil"
)

// kineto is a decoded trace with its top-level key order.
type kineto struct {
	keys   []string
	top    map[string]json.RawMessage
	events []map[string]any
	raw    []byte
}

func decodeKineto(t *testing.T, raw []byte) kineto {
	t.Helper()
	k := kineto{top: map[string]json.RawMessage{}, raw: raw}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("trace is not an object: %v", err)
	}
	for dec.More() {
		kt, _ := dec.Token()
		key := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("key %s: %v", key, err)
		}
		k.keys = append(k.keys, key)
		k.top[key] = v
	}
	d2 := json.NewDecoder(bytes.NewReader(k.top["traceEvents"]))
	d2.UseNumber()
	if err := d2.Decode(&k.events); err != nil {
		t.Fatalf("traceEvents: %v", err)
	}
	return k
}

func loadKinetoGz(t *testing.T, path string) kineto {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return decodeKineto(t, raw)
}

// tsNS converts a Kineto "<us>.<ns>" number to integer nanoseconds without
// going through float64.
func tsNS(v any) int64 {
	s := string(v.(json.Number))
	us, frac, _ := strings.Cut(s, ".")
	n, _ := strconv.ParseInt(us, 10, 64)
	frac = (frac + "000")[:3]
	f, _ := strconv.ParseInt(frac, 10, 64)
	return n*1000 + f
}

func argsOf(e map[string]any) map[string]any {
	a, _ := e["args"].(map[string]any)
	return a
}

func corrOf(e map[string]any) string {
	if c, ok := argsOf(e)["correlation"].(json.Number); ok {
		return string(c)
	}
	return ""
}

// structure summarises the properties the analysis stage relies on.
type structure struct {
	phaseCats      map[string]bool
	kernelArgKeys  map[string]bool
	gpuNoLaunch    int
	kernelEarly    int
	sNoLaunch      int
	sTSMismatch    int
	gpuFNoS        int
	fTSMismatch    int
	steps          int
	stepsBadName   int
	stepsNoGPUAnn  int
	outsideGPUAnn  int
	graphLaunches  int
	minGraphNodes  int
	ncclKernels    int
	pyDangling     int
	lastIsWindow   bool
	gpuSortIndexOK bool
	runtimeNames   map[string]bool
}

func analyse(k kineto) structure {
	st := structure{phaseCats: map[string]bool{}, kernelArgKeys: map[string]bool{}, runtimeNames: map[string]bool{}, minGraphNodes: -1, gpuSortIndexOK: true}
	launch := map[string]map[string]any{}
	var gpu, userSteps []map[string]any
	gpuAnn := map[string]map[string]any{}
	sFlows := map[string]map[string]any{}
	pyIDs := map[string]bool{}
	gpuPids := map[string]bool{}
	for _, e := range k.events {
		ph, _ := e["ph"].(string)
		cat, _ := e["cat"].(string)
		st.phaseCats[ph+"/"+cat] = true
		switch cat {
		case "cuda_runtime", "cuda_driver":
			launch[corrOf(e)] = e
			st.runtimeNames[e["name"].(string)] = true
		case "kernel", "gpu_memcpy", "gpu_memset":
			gpu = append(gpu, e)
			gpuPids[string(e["pid"].(json.Number))] = true
			if cat == "kernel" {
				for key := range argsOf(e) {
					st.kernelArgKeys[key] = true
				}
				if strings.HasPrefix(e["name"].(string), "nccl") {
					st.ncclKernels++
				}
			}
		case "gpu_user_annotation":
			gpuAnn[string(argsOf(e)["External id"].(json.Number))] = e
		case "user_annotation":
			if strings.HasPrefix(e["name"].(string), "step[") {
				userSteps = append(userSteps, e)
			}
		case "python_function":
			pyIDs[string(argsOf(e)["Python id"].(json.Number))] = true
		}
		if ph == "s" {
			sFlows[string(e["id"].(json.Number))] = e
		}
		if ph == "M" && e["name"] == "process_sort_index" {
			if pid, ok := e["pid"].(json.Number); ok {
				n, _ := pid.Int64()
				idx, _ := argsOf(e)["sort_index"].(json.Number).Int64()
				if n < 100 && idx != 5000000+n {
					st.gpuSortIndexOK = false
				}
			}
		}
	}
	nodes := map[string]int{}
	for _, g := range gpu {
		c := corrOf(g)
		nodes[c]++
		l, ok := launch[c]
		if !ok {
			st.gpuNoLaunch++
			continue
		}
		if tsNS(g["ts"]) < tsNS(l["ts"]) {
			st.kernelEarly++
		}
	}
	for id, s := range sFlows {
		l, ok := launch[id]
		if !ok {
			st.sNoLaunch++
		} else if tsNS(l["ts"]) != tsNS(s["ts"]) {
			st.sTSMismatch++
		}
	}
	gpuTS := map[string]map[int64]bool{}
	for _, g := range gpu {
		c := corrOf(g)
		if gpuTS[c] == nil {
			gpuTS[c] = map[int64]bool{}
		}
		gpuTS[c][tsNS(g["ts"])] = true
	}
	for _, e := range k.events {
		if e["ph"] != "f" {
			continue
		}
		pid, ok := e["pid"].(json.Number)
		if !ok || !gpuPids[string(pid)] {
			continue
		}
		id := string(e["id"].(json.Number))
		if _, ok := sFlows[id]; !ok {
			st.gpuFNoS++
		}
		if !gpuTS[id][tsNS(e["ts"])] {
			st.fTSMismatch++
		}
	}
	for c, l := range launch {
		if l["name"] == "cudaGraphLaunch" {
			st.graphLaunches++
			if st.minGraphNodes < 0 || nodes[c] < st.minGraphNodes {
				st.minGraphNodes = nodes[c]
			}
		}
	}
	for _, u := range userSteps {
		st.steps++
		if !stepRE.MatchString(u["name"].(string)) {
			st.stepsBadName++
		}
		ga, ok := gpuAnn[string(argsOf(u)["External id"].(json.Number))]
		if !ok {
			st.stepsNoGPUAnn++
			continue
		}
		t0, t1 := tsNS(u["ts"]), tsNS(u["ts"])+tsNS(u["dur"])
		g0, g1 := tsNS(ga["ts"]), tsNS(ga["ts"])+tsNS(ga["dur"])
		for _, g := range gpu {
			l := launch[corrOf(g)]
			if l == nil {
				continue
			}
			if lt := tsNS(l["ts"]); lt >= t0 && lt <= t1 {
				if tsNS(g["ts"]) < g0 || tsNS(g["ts"])+tsNS(g["dur"]) > g1+2 {
					st.outsideGPUAnn++
				}
			}
		}
	}
	for _, e := range k.events {
		if e["cat"] == "python_function" {
			if p, ok := argsOf(e)["Python parent id"].(json.Number); ok && !pyIDs[string(p)] {
				st.pyDangling++
			}
		}
	}
	last := k.events[len(k.events)-1]
	st.lastIsWindow = last["name"] == "Record Window End" && last["ph"] == "i" && last["s"] == "g" && last["pid"] == ""
	return st
}

// fixtureLikeSpec mirrors the h200 TP=2 fixture's workload: one prefill of
// 8x512 tokens then graph-replayed decode steps of batch 8.
func fixtureLikeSpec(rank, tp int, graph bool) traceSpec {
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var steps []stepRecord
	t := start.Add(2 * time.Millisecond)
	steps = append(steps, stepRecord{ct: 101, mode: StageExtend, bs: 8, toks: 4096, start: t, end: t.Add(14 * time.Millisecond)})
	t = t.Add(15 * time.Millisecond)
	for i := range 8 {
		steps = append(steps, stepRecord{ct: 102 + i, mode: StageDecode, bs: 8, toks: 8, start: t, end: t.Add(4 * time.Millisecond), graph: graph})
		t = t.Add(4500 * time.Microsecond)
	}
	return traceSpec{
		rank: Rank{TP: rank}, globalRank: rank, tpSize: tp, ppSize: 1, worldSize: tp, groupRank: rank, device: rank,
		nodeGPUs: 2, pid: 696 + rank, layers: 2, firstStage: true, lastStage: true, seed: 7,
		withStack: true, recordShape: true, start: start, stop: t.Add(time.Millisecond), steps: steps,
		traceName: "/tmp/tmpabc.json", ncclVersion: "2.28.9",
	}
}

func generate(t *testing.T, sp traceSpec) kineto {
	t.Helper()
	var buf bytes.Buffer
	n, err := writeTrace(&buf, sp)
	if err != nil {
		t.Fatal(err)
	}
	k := decodeKineto(t, buf.Bytes())
	if n != len(k.events) {
		t.Errorf("writeTrace reported %d events, file has %d", n, len(k.events))
	}
	return k
}

// TestTrace_StructureMatchesFixture compares a generated TP=2 trace with the
// real H200 TP=2 trace recorded for this project: same top-level keys in the
// same order, only event kinds the real trace has, and the same
// correlation, flow, graph and annotation invariants.
func TestTrace_StructureMatchesFixture(t *testing.T) {
	t.Parallel()
	fx := loadKinetoGz(t, testutil.TraceFixture(t, "h200/1764201700.000002-TP-1.trace.json.gz"))
	sim := generate(t, fixtureLikeSpec(1, 2, true))

	if strings.Join(sim.keys, ",") != strings.Join(fx.keys, ",") {
		t.Errorf("top-level keys\n sim %v\n fix %v", sim.keys, fx.keys)
	}
	var fdi, sdi map[string]any
	json.Unmarshal(fx.top["distributedInfo"], &fdi)
	json.Unmarshal(sim.top["distributedInfo"], &sdi)
	for _, key := range []string{"backend", "rank", "world_size", "pg_config", "nccl_version"} {
		if _, ok := sdi[key]; !ok {
			t.Errorf("distributedInfo lacks %s", key)
		}
	}
	if sdi["rank"] != fdi["rank"] || sdi["world_size"] != fdi["world_size"] {
		t.Errorf("distributedInfo rank/world_size %v/%v, fixture %v/%v", sdi["rank"], sdi["world_size"], fdi["rank"], fdi["world_size"])
	}
	var fdp, sdp []map[string]any
	json.Unmarshal(fx.top["deviceProperties"], &fdp)
	json.Unmarshal(sim.top["deviceProperties"], &sdp)
	if len(sdp) != 2 || !sameKeys(fdp[0], sdp[0]) {
		t.Errorf("deviceProperties %v vs fixture %v", sdp, fdp)
	}

	fs, ss := analyse(fx), analyse(sim)
	for pc := range ss.phaseCats {
		if !fs.phaseCats[pc] {
			t.Errorf("generated event kind %s does not occur in the real trace", pc)
		}
	}
	for pc := range fs.phaseCats {
		if !ss.phaseCats[pc] {
			t.Errorf("real event kind %s missing from the generated trace", pc)
		}
	}
	for key := range ss.kernelArgKeys {
		if !fs.kernelArgKeys[key] {
			t.Errorf("generated kernel arg %q not in the real trace", key)
		}
	}
	for _, key := range []string{"device", "stream", "correlation", "grid", "block", "registers per thread", "shared memory", "Collective name"} {
		if !ss.kernelArgKeys[key] {
			t.Errorf("generated kernels lack %q", key)
		}
	}
	for rt := range ss.runtimeNames {
		if !fs.runtimeNames[rt] && rt != "cudaStreamSynchronize" {
			t.Errorf("runtime call %s is not one the real trace has", rt)
		}
	}
	checks := []struct {
		name     string
		sim, fix int
	}{
		{"GPU events without a launch", ss.gpuNoLaunch, fs.gpuNoLaunch},
		{"GPU events before their launch", ss.kernelEarly, fs.kernelEarly},
		{"s flows without a launch", ss.sNoLaunch, fs.sNoLaunch},
		{"s flows off their launch ts", ss.sTSMismatch, fs.sTSMismatch},
		{"GPU f flows without an s", ss.gpuFNoS, fs.gpuFNoS},
		{"GPU f flows off their event ts", ss.fTSMismatch, fs.fTSMismatch},
		{"step annotations with a bad name", ss.stepsBadName, fs.stepsBadName},
		{"steps without a GPU annotation", ss.stepsNoGPUAnn, fs.stepsNoGPUAnn},
		{"GPU work outside its step's GPU annotation", ss.outsideGPUAnn, fs.outsideGPUAnn},
		{"dangling Python parent ids", ss.pyDangling, fs.pyDangling},
	}
	for _, c := range checks {
		if c.fix != 0 {
			t.Fatalf("fixture assumption broken: %s = %d", c.name, c.fix)
		}
		if c.sim != 0 {
			t.Errorf("%s: %d", c.name, c.sim)
		}
	}
	if ss.steps != 9 {
		t.Errorf("generated %d step annotations, want 9", ss.steps)
	}
	if ss.graphLaunches != 8 || ss.minGraphNodes < 10 || fs.minGraphNodes < 10 {
		t.Errorf("graph launches %d (min nodes %d); fixture min nodes %d", ss.graphLaunches, ss.minGraphNodes, fs.minGraphNodes)
	}
	if ss.ncclKernels == 0 || fs.ncclKernels == 0 {
		t.Errorf("NCCL kernels: generated %d, fixture %d", ss.ncclKernels, fs.ncclKernels)
	}
	if !ss.lastIsWindow || !fs.lastIsWindow {
		t.Errorf("last event Record Window End: generated %v, fixture %v", ss.lastIsWindow, fs.lastIsWindow)
	}
	if !ss.gpuSortIndexOK || !fs.gpuSortIndexOK {
		t.Errorf("GPU process_sort_index = 5000000+device: generated %v, fixture %v", ss.gpuSortIndexOK, fs.gpuSortIndexOK)
	}
}

// TestTrace_TimestampText: ts/dur are microseconds with exactly three
// fraction digits relative to baseTimeNanoseconds, which is floored to
// Kineto's ~3-month period.
func TestTrace_TimestampText(t *testing.T) {
	t.Parallel()
	sp := fixtureLikeSpec(0, 1, true)
	k := generate(t, sp)
	for _, m := range regexp.MustCompile(`"(ts|dur)": ([0-9.]+)`).FindAllSubmatch(k.raw, -1) {
		if !regexp.MustCompile(`^\d+\.\d{3}$`).Match(m[2]) {
			t.Fatalf("%s written as %s", m[1], m[2])
		}
	}
	var base int64
	json.Unmarshal(k.top["baseTimeNanoseconds"], &base)
	if base%(kinetoBasePeriod*int64(time.Second)) != 0 || base > sp.start.UnixNano() {
		t.Errorf("baseTimeNanoseconds %d", base)
	}
	for _, e := range k.events {
		if e["cat"] == "user_annotation" && e["name"] == "step[EXTEND bs=8 toks=4096]" {
			if abs := base + tsNS(e["ts"]); abs < sp.steps[0].start.UnixNano() || abs > sp.steps[0].end.UnixNano() {
				t.Errorf("EXTEND annotation at %d, outside its batch [%d, %d]", abs, sp.steps[0].start.UnixNano(), sp.steps[0].end.UnixNano())
			}
		}
	}
}

func TestTrace_DeterministicAndScales(t *testing.T) {
	t.Parallel()
	var a, b, c bytes.Buffer
	sp := fixtureLikeSpec(0, 2, true)
	writeTrace(&a, sp)
	writeTrace(&b, sp)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same spec, different traces")
	}
	sp.seed = 8
	writeTrace(&c, sp)
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("different seeds, identical traces")
	}
	small := fixtureLikeSpec(0, 2, true)
	big := fixtureLikeSpec(0, 2, true)
	big.layers = 8
	ns, _ := writeTrace(io.Discard, small)
	nb, _ := writeTrace(io.Discard, big)
	if nb < 2*ns {
		t.Errorf("8 layers gave %d events, 2 layers %d: size should scale with layers", nb, ns)
	}
	more := fixtureLikeSpec(0, 2, true)
	more.steps = append(more.steps, more.steps[1:]...)
	nm, _ := writeTrace(io.Discard, more)
	if nm < ns*3/2 {
		t.Errorf("twice the decode steps gave %d events vs %d", nm, ns)
	}
}

// TestTrace_EagerDecodeAndPP: --disable-cuda-graph decode launches every
// kernel; PP stages exchange activations with NCCL send/recv and only the
// last stage samples.
func TestTrace_EagerDecodeAndPP(t *testing.T) {
	t.Parallel()
	eager := analyse(generate(t, fixtureLikeSpec(0, 1, false)))
	if eager.graphLaunches != 0 || eager.ncclKernels != 0 || eager.outsideGPUAnn != 0 || eager.gpuNoLaunch != 0 {
		t.Errorf("eager TP=1: %+v", eager)
	}
	sp := fixtureLikeSpec(0, 2, true)
	sp.ppSize, sp.rank.PP, sp.lastStage = 2, 0, false
	k := generate(t, sp)
	names := map[string]bool{}
	for _, e := range k.events {
		if e["cat"] == "kernel" {
			names[e["name"].(string)] = true
		}
	}
	if !names[kSendRecv.name] || names[kLMHead.name] || names[kArgMax.name] {
		t.Errorf("PP0 kernels: sendrecv %v lm_head %v argmax %v", names[kSendRecv.name], names[kLMHead.name], names[kArgMax.name])
	}
}

// TestTrace_SGLangPythonFrames: with_stack traces carry SGLang's source
// paths as in the real SGLang traces; with_stack=false drops them.
func TestTrace_SGLangPythonFrames(t *testing.T) {
	t.Parallel()
	fx := loadKinetoGz(t, testutil.TraceFixture(t, "tracelens/sglang_Qwen3-8B_decode.json.gz"))
	const prefix = "/sgl-workspace/sglang/python/sglang/srt/"
	count := func(k kineto) int {
		n := 0
		for _, e := range k.events {
			if e["cat"] == "python_function" && strings.HasPrefix(e["name"].(string), prefix) {
				n++
			}
		}
		return n
	}
	if count(fx) == 0 {
		t.Fatal("fixture assumption broken: no SGLang frames")
	}
	sp := fixtureLikeSpec(0, 1, true)
	if count(generate(t, sp)) == 0 {
		t.Error("no SGLang python frames generated")
	}
	sp.withStack, sp.recordShape = false, false
	k := generate(t, sp)
	if analyse(k).phaseCats["X/python_function"] {
		t.Error("python_function events with with_stack=false")
	}
	if _, ok := k.top["with_stack"]; ok {
		t.Error("with_stack key with with_stack=false")
	}
	if bytes.Contains(k.raw, []byte(`"Input Dims"`)) {
		t.Error("Input Dims with record_shapes=false")
	}
}

func sameKeys(a, b map[string]any) bool {
	ka, kb := make([]string, 0, len(a)), make([]string, 0, len(b))
	for k := range a {
		ka = append(ka, k)
	}
	for k := range b {
		kb = append(kb, k)
	}
	sort.Strings(ka)
	sort.Strings(kb)
	return strings.Join(ka, ",") == strings.Join(kb, ",")
}

// BenchmarkWriteTrace measures trace generation for a Qwen3-8B-sized model
// (36 layers, TP=2): one prefill and 32 graph-replayed decode steps.
func BenchmarkWriteTrace(b *testing.B) {
	sp := fixtureLikeSpec(0, 2, true)
	sp.layers = 36
	last := sp.steps[len(sp.steps)-1]
	for i := range 24 {
		st := last
		st.ct += i + 1
		st.start = last.start.Add(time.Duration(i+1) * 4500 * time.Microsecond)
		st.end = st.start.Add(4 * time.Millisecond)
		sp.steps = append(sp.steps, st)
	}
	sp.stop = sp.steps[len(sp.steps)-1].end.Add(time.Millisecond)
	var cw countWriter
	events, _ := writeTrace(&cw, sp)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		writeTrace(io.Discard, sp)
	}
	b.ReportMetric(float64(events), "events/op")
	b.ReportMetric(float64(cw.n)/1e6, "MB/op")
	b.SetBytes(cw.n)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
