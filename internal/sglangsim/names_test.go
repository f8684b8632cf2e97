package sglangsim

import (
	"testing"
)

// TestTraceFileName pins names to sglang-api.md §7: DP/PP/EP parts only for
// sizes above one, prefix first, stage last.
func TestTraceFileName(t *testing.T) {
	const id = "1769071195.6634595"
	tests := []struct {
		name           string
		tp, dp, pp, ep int
		rank           Rank
		prefix         string
		stage          Stage
		want           string
	}{
		{"tp1", 1, 1, 1, 1, Rank{}, "", StageNone, id + "-TP-0.trace.json.gz"},
		{"tp4 rank3", 4, 1, 1, 1, Rank{TP: 3}, "", StageNone, id + "-TP-3.trace.json.gz"},
		{"dp2", 1, 2, 1, 1, Rank{DP: 1}, "", StageNone, id + "-TP-0-DP-1.trace.json.gz"},
		{"pp2", 2, 1, 2, 1, Rank{TP: 1, PP: 1}, "", StageNone, id + "-TP-1-PP-1.trace.json.gz"},
		{"ep2", 2, 1, 1, 2, Rank{TP: 1, EP: 1}, "", StageNone, id + "-TP-1-EP-1.trace.json.gz"},
		{"all dims", 2, 2, 2, 2, Rank{TP: 1, DP: 1, PP: 1, EP: 1}, "", StageNone, id + "-TP-1-DP-1-PP-1-EP-1.trace.json.gz"},
		{"prefix", 1, 1, 1, 1, Rank{}, "nightly", StageNone, "nightly-" + id + "-TP-0.trace.json.gz"},
		{"by stage", 2, 1, 2, 1, Rank{PP: 1}, "p", StageDecode, "p-" + id + "-TP-0-PP-1-DECODE.trace.json.gz"},
		{"extend", 1, 1, 1, 1, Rank{}, "", StageExtend, id + "-TP-0-EXTEND.trace.json.gz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ServerArgs{TPSize: tc.tp, DPSize: tc.dp, PPSize: tc.pp, EPSize: tc.ep}
			if got := TraceFileName(tc.prefix, id, &a, tc.rank, tc.stage); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	if got := MergedFileName(id); got != "merged-"+id+".trace.json.gz" {
		t.Errorf("merged name %s", got)
	}
}

func TestProfileIDNow_PythonFloatText(t *testing.T) {
	tests := []struct {
		ns   int64
		want string
	}{
		{1769071195663459500, "1769071195.6634595"},
		{1764201600000001000, "1764201600.000001"},
		{1764201600000000000, "1764201600.0"},
	}
	for _, tc := range tests {
		if got := profileIDNow(tc.ns); got != tc.want {
			t.Errorf("profileIDNow(%d) = %s, want %s", tc.ns, got, tc.want)
		}
	}
}

func TestRankPrefix(t *testing.T) {
	tests := []struct {
		tp, dp, pp int
		r          Rank
		want       string
	}{
		{1, 1, 1, Rank{}, ""},
		{2, 1, 1, Rank{TP: 1}, " TP1"},
		{2, 2, 1, Rank{TP: 1, DP: 1}, " DP1 TP1"},
		{2, 1, 2, Rank{TP: 0, PP: 1}, " PP1 TP0"},
	}
	for _, tc := range tests {
		a := ServerArgs{TPSize: tc.tp, DPSize: tc.dp, PPSize: tc.pp, EPSize: 1}
		if got := rankPrefix(&a, tc.r); got != tc.want {
			t.Errorf("rankPrefix(%+v) = %q, want %q", tc, got, tc.want)
		}
	}
}
