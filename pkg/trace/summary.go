package trace

// SummaryVersion is the schema version of Summary's JSON form (summary.json
// and the API). Fields are only ever added within a version.
const SummaryVersion = 1

// Summary is the analysis of one profiling session: one or more per-rank
// traces. Durations are integer nanoseconds; times (…_ns offsets) are
// relative to the session origin, the earliest GPU or CPU event of any rank
// on the common time base.
type Summary struct {
	Version int `json:"version"`
	// OriginUnixNs is the session origin as Unix nanoseconds, 0 when the
	// traces carry no baseTimeNanoseconds (times are then relative to an
	// unknown epoch).
	OriginUnixNs int64 `json:"origin_unix_ns"`
	// WindowNs spans the earliest to the latest event of any rank.
	WindowNs int64 `json:"window_ns"`
	// Devices names the GPU model(s) reported by the traces.
	Devices []string      `json:"devices,omitempty"`
	Ranks   []RankSummary `json:"ranks"`

	// Session-wide figures. Kernel and family figures add up all ranks;
	// step figures come from each replica's leader rank (TP 0, PP 0), since
	// every rank of a replica runs the same steps.
	GPUBusyNs    int64        `json:"gpu_busy_ns"`
	GPUIdleNs    int64        `json:"gpu_idle_ns"`
	Utilization  float64      `json:"utilization"`
	KernelTimeNs int64        `json:"kernel_time_ns"`
	Families     []FamilyStat `json:"families"`
	Kernels      []KernelStat `json:"kernels"`
	// KernelsTruncated is set when Kernels was cut to its maximum length.
	KernelsTruncated bool        `json:"kernels_truncated"`
	Modes            []ModeStat  `json:"modes"`
	Steps            int         `json:"steps"`
	Comm             CommStat    `json:"comm"`
	Graph            GraphStat   `json:"graph"`
	Bubbles          BubbleStat  `json:"bubbles"`
	Imbalance        *Imbalance  `json:"imbalance,omitempty"`
	Warnings         []Warning   `json:"warnings"`
	Events           EventCounts `json:"events"`
}

// RankSummary is the analysis of one trace file: one rank, or one stage of
// one rank when SGLang profiled by stage.
type RankSummary struct {
	// Label is SGLang's process label ("[TP01]") plus the stage, if any.
	Label string `json:"label"`
	Rank  Rank   `json:"rank"`
	File  string `json:"file"`
	// Leader marks the rank whose steps stand for its replica (TP 0, PP 0).
	Leader bool `json:"leader"`
	// BaseTimeNanoseconds is the file's time base, 0 when absent.
	BaseTimeNanoseconds int64            `json:"base_time_ns"`
	Distributed         *DistributedInfo `json:"distributed,omitempty"`
	Events              EventCounts      `json:"events"`
	// StartNs and EndNs bound the rank's events, relative to the origin.
	StartNs int64 `json:"start_ns"`
	EndNs   int64 `json:"end_ns"`

	Devices      []DeviceStat `json:"devices"`
	GPUBusyNs    int64        `json:"gpu_busy_ns"`
	GPUSpanNs    int64        `json:"gpu_span_ns"`
	GPUIdleNs    int64        `json:"gpu_idle_ns"`
	Utilization  float64      `json:"utilization"`
	KernelTimeNs int64        `json:"kernel_time_ns"`
	Families     []FamilyStat `json:"families"`
	TopKernels   []KernelStat `json:"top_kernels"`
	Modes        []ModeStat   `json:"modes"`
	Steps        []Step       `json:"steps"`
	Bubbles      BubbleStat   `json:"bubbles"`
	Comm         CommStat     `json:"comm"`
	Graph        GraphStat    `json:"graph"`
	Launch       LaunchStat   `json:"launch"`
	// Collectives counts communication kernels in time order; the
	// imbalance analysis aligns them across ranks by ordinal.
	Collectives int `json:"collectives"`
	// OverheadNs is the time of CUPTI "overhead" records (buffer flushes).
	OverheadNs int64     `json:"overhead_ns"`
	Warnings   []Warning `json:"warnings"`
}

// EventCounts counts events by phase and category.
type EventCounts struct {
	Total int64            `json:"total"`
	ByPh  map[string]int64 `json:"by_ph"`
	ByCat map[string]int64 `json:"by_cat"`
}

// DeviceStat is one GPU's busy time: the union of its kernel, memcpy and
// memset intervals (kernels overlap, so it is never their sum).
type DeviceStat struct {
	Device      int     `json:"device"`
	Name        string  `json:"name,omitempty"`
	Kernels     int64   `json:"kernels"`
	Memcpys     int64   `json:"memcpys"`
	Memsets     int64   `json:"memsets"`
	BusyNs      int64   `json:"busy_ns"`
	SpanNs      int64   `json:"span_ns"`
	IdleNs      int64   `json:"idle_ns"`
	Utilization float64 `json:"utilization"`
	// StartNs is the first activity, relative to the origin.
	StartNs int64 `json:"start_ns"`
	// Timeline is busy share in equal slices of the session window (for
	// charts); 0..1 each.
	Timeline []float64 `json:"timeline,omitempty"`
}

// FamilyStat aggregates GPU activities of one kernel family.
type FamilyStat struct {
	Family string `json:"family"`
	Count  int64  `json:"count"`
	// TotalNs sums durations (not a union).
	TotalNs int64 `json:"total_ns"`
	// Share is TotalNs over the summed time of all GPU activities.
	Share float64 `json:"share"`
}

// KernelStat aggregates GPU activities with one name.
type KernelStat struct {
	Name    string  `json:"name"`
	Family  string  `json:"family"`
	Count   int64   `json:"count"`
	TotalNs int64   `json:"total_ns"`
	MeanNs  int64   `json:"mean_ns"`
	MinNs   int64   `json:"min_ns"`
	MaxNs   int64   `json:"max_ns"`
	Share   float64 `json:"share"`
}

// Step is one model forward from SGLang's step[...] annotation, joined to
// the GPU work it launched through CUPTI correlation ids (a CUDA-graph launch
// contributes every node of the graph).
type Step struct {
	Index int    `json:"index"`
	Mode  string `json:"mode"`
	BS    int    `json:"bs"`
	// Tokens is toks= for EXTEND-like steps and bs for DECODE.
	Tokens  int   `json:"tokens"`
	StartNs int64 `json:"start_ns"`
	// CPUNs is the annotation's duration (the host side of the forward).
	CPUNs int64 `json:"cpu_ns"`
	// GPUStartNs is the first GPU activity's start relative to StartNs.
	GPUStartNs int64 `json:"gpu_start_ns"`
	GPUSpanNs  int64 `json:"gpu_span_ns"`
	GPUBusyNs  int64 `json:"gpu_busy_ns"`
	// WallNs is the step's share of the timeline: from the annotation's
	// start (or, when the CPU ran ahead, the end of the previous step's GPU
	// work) to the later of the annotation's end and its last GPU
	// activity's end. For decode it approximates the time per output token.
	WallNs int64 `json:"wall_ns"`
	// QueuedNs is how long the step's GPU work waited behind earlier steps.
	QueuedNs int64 `json:"queued_ns"`
	Kernels  int   `json:"kernels"`
	Graph    bool  `json:"graph"`
	CommNs   int64 `json:"comm_ns"`
	// LaunchBound marks eager steps whose GPU mostly waited for launches.
	LaunchBound bool `json:"launch_bound"`
	// Partial marks steps cut by the profiling window or without GPU work.
	Partial bool `json:"partial,omitempty"`
}

// ModeStat aggregates the steps of one mode (EXTEND, DECODE, ...).
type ModeStat struct {
	Mode  string `json:"mode"`
	Steps int    `json:"steps"`
	// Tokens sums Step.Tokens; TokensPerSec divides it by the summed wall
	// time (per replica, then added over replicas).
	Tokens       int64   `json:"tokens"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	TotalNs      int64   `json:"total_ns"`
	MeanNs       int64   `json:"mean_ns"`
	P50Ns        int64   `json:"p50_ns"`
	P90Ns        int64   `json:"p90_ns"`
	P99Ns        int64   `json:"p99_ns"`
	MinNs        int64   `json:"min_ns"`
	MaxNs        int64   `json:"max_ns"`
	// StddevNs is the sample standard deviation of wall time (noise for diffs).
	StddevNs   int64 `json:"stddev_ns"`
	GPUBusyNs  int64 `json:"gpu_busy_ns"`
	CommNs     int64 `json:"comm_ns"`
	Kernels    int64 `json:"kernels"`
	GraphSteps int   `json:"graph_steps"`
	// GraphCoverage is the share of the mode's steps replayed as CUDA graphs.
	GraphCoverage    float64      `json:"graph_coverage"`
	LaunchBoundSteps int          `json:"launch_bound_steps"`
	Families         []FamilyStat `json:"families"`
	ByBatch          []BatchStat  `json:"by_batch"`
	// WallSamples holds up to 512 step wall times for distribution charts.
	WallSamples []int64 `json:"wall_samples,omitempty"`
}

// BatchStat is step time for one batch size within a mode.
type BatchStat struct {
	BS     int   `json:"bs"`
	Steps  int   `json:"steps"`
	MeanNs int64 `json:"mean_ns"`
	P50Ns  int64 `json:"p50_ns"`
}

// BubbleStat describes GPU idle gaps between consecutive steps and the CPU
// work that ran in them.
type BubbleStat struct {
	Count   int   `json:"count"`
	TotalNs int64 `json:"total_ns"`
	MeanNs  int64 `json:"mean_ns"`
	MaxNs   int64 `json:"max_ns"`
	// Share is TotalNs over the time from the first to the last step's GPU work.
	Share float64 `json:"share"`
	// CPU lists the outermost CPU ops/annotations overlapping the gaps, by
	// overlap time; SyncNs is time in host-device synchronisation calls.
	CPU    []CPUWork `json:"cpu"`
	SyncNs int64     `json:"sync_ns"`
	// UnattributedNs is gap time with no profiled CPU op (Python or idle).
	UnattributedNs int64 `json:"unattributed_ns"`
}

// CPUWork is CPU time by operation name.
type CPUWork struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Ns    int64  `json:"ns"`
}

// CommStat is communication-kernel time (NCCL/RCCL, custom and symmetric-
// memory all-reduce, DeepEP).
type CommStat struct {
	Kernels int64 `json:"kernels"`
	// BusyNs is the union of communication kernels; Share divides it by
	// GPU busy time.
	BusyNs int64   `json:"busy_ns"`
	Share  float64 `json:"share"`
	// ExposedNs is communication not overlapped by other GPU work.
	ExposedNs int64 `json:"exposed_ns"`
	// WaitNs is time spent waiting for other ranks inside collectives
	// (duration minus the fastest rank's for the same collective).
	WaitNs int64 `json:"wait_ns"`
}

// GraphStat is CUDA/HIP graph usage.
type GraphStat struct {
	Launches int64 `json:"launches"`
	// Kernels are GPU activities launched by graph launches.
	Kernels int64 `json:"kernels"`
	// Coverage is the share of GPU activity time from graph replays.
	Coverage float64 `json:"coverage"`
	// ReplayLatencyNs is the mean time from a graph launch call's start to
	// its first node's start.
	ReplayLatencyNs int64 `json:"replay_latency_ns"`
}

// LaunchStat describes how kernels were fed.
type LaunchStat struct {
	// Launches counts eager launch calls that produced GPU work.
	Launches int64 `json:"launches"`
	// Gated counts eager kernels whose launch call started after the GPU
	// had gone idle: the GPU waited for the CPU.
	Gated int64 `json:"gated"`
	// GatedShare is Gated over eager kernels.
	GatedShare float64 `json:"gated_share"`
	// MeanDelayNs is the mean launch-call-start to kernel-start delay of
	// eager kernels.
	MeanDelayNs int64 `json:"mean_delay_ns"`
	// SyncCalls and SyncNs count host-device synchronisation calls.
	SyncCalls int64 `json:"sync_calls"`
	SyncNs    int64 `json:"sync_ns"`
	// LaunchBound is set when most eager kernels were gated and the GPU was
	// busy less than half of the steps' GPU span.
	LaunchBound bool `json:"launch_bound"`
}

// Imbalance compares ranks of one stage.
type Imbalance struct {
	// SameTimeBase is false when ranks' baseTimeNanoseconds differ, so
	// cross-rank start times are not comparable.
	SameTimeBase bool `json:"same_time_base"`
	// BusySpread is (max-min)/mean GPU busy time over ranks.
	BusySpread float64 `json:"busy_spread"`
	MinBusyNs  int64   `json:"min_busy_ns"`
	MaxBusyNs  int64   `json:"max_busy_ns"`
	// Collectives is how many collectives were aligned by ordinal across
	// every rank (equal counts are required for exact alignment).
	Collectives int `json:"collectives"`
	// Aligned is false when ranks had different collective counts; the
	// first Collectives were compared.
	Aligned bool `json:"aligned"`
	// Ranks holds per-rank waits and how often each rank was the last to
	// arrive.
	Ranks []RankWait `json:"ranks"`
	// MaxWait is the largest single wait.
	MaxWait *CollectiveWait `json:"max_wait,omitempty"`
	// Straggler is the rank that made others wait the most, if significant.
	Straggler string `json:"straggler,omitempty"`
	// MaxStartSkewNs is the largest start-time spread of one collective
	// (only with SameTimeBase).
	MaxStartSkewNs int64 `json:"max_start_skew_ns"`
	// StepSpread is the mean over aligned steps of (max-min)/max wall time.
	StepSpread float64 `json:"step_spread"`
}

// RankWait is one rank's collective waits.
type RankWait struct {
	Label  string `json:"label"`
	WaitNs int64  `json:"wait_ns"`
	// LastArrivals counts collectives where this rank was the slowest to
	// arrive; CausedNs sums the others' waits in those.
	LastArrivals int   `json:"last_arrivals"`
	CausedNs     int64 `json:"caused_ns"`
	BusyNs       int64 `json:"busy_ns"`
}

// CollectiveWait is one rank's wait in one collective.
type CollectiveWait struct {
	Label   string `json:"label"`
	Ordinal int    `json:"ordinal"`
	Kernel  string `json:"kernel"`
	WaitNs  int64  `json:"wait_ns"`
	DurNs   int64  `json:"dur_ns"`
	StartNs int64  `json:"start_ns"`
	// Waited names the rank that arrived last.
	Waited string `json:"waited"`
}

// Warning flags something that makes the numbers less trustworthy or points
// at a problem. Codes are stable identifiers.
type Warning struct {
	Code    string `json:"code"`
	Rank    string `json:"rank,omitempty"`
	Message string `json:"message"`
}

// Warning codes.
const (
	WarnPythonHeavy      = "python_function_heavy"
	WarnCuptiOverhead    = "cupti_overhead"
	WarnPartialStep      = "partial_step"
	WarnNoFlows          = "no_flows"
	WarnNoSteps          = "no_steps"
	WarnBaseTimeMismatch = "base_time_mismatch"
	WarnNoBaseTime       = "no_base_time"
	WarnEagerDecode      = "eager_decode"
	WarnStreamOverlap    = "stream_overlap"
	WarnLaunchBound      = "launch_bound"
	WarnStraggler        = "straggler"
	WarnNoGPU            = "no_gpu_activity"
)
