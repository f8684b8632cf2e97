package sglangsim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Rank identifies one scheduler process (one GPU) of an SGLang deployment.
type Rank struct {
	TP, DP, PP, EP int
}

// Stage is the forward mode a profile_by_stage trace covers; "" for a plain
// trace.
type Stage string

// Stages SGLang writes with profile_by_stage (ForwardMode names).
const (
	StageNone   Stage = ""
	StageExtend Stage = "EXTEND"
	StageDecode Stage = "DECODE"
)

// TraceFileName returns the name SGLang gives a per-rank trace:
// [<prefix>-]<id>-TP-<tp>[-DP-<dp>][-PP-<pp>][-EP-<ep>][-EXTEND|-DECODE].trace.json.gz,
// where the DP, PP and EP parts appear only when that dimension's size is
// above one.
func TraceFileName(prefix, profileID string, a *ServerArgs, r Rank, stage Stage) string {
	var b strings.Builder
	if prefix != "" {
		b.WriteString(prefix)
		b.WriteByte('-')
	}
	b.WriteString(profileID)
	fmt.Fprintf(&b, "-TP-%d", r.TP)
	if a.DPSize > 1 {
		fmt.Fprintf(&b, "-DP-%d", r.DP)
	}
	if a.PPSize > 1 {
		fmt.Fprintf(&b, "-PP-%d", r.PP)
	}
	if a.EPSize > 1 {
		fmt.Fprintf(&b, "-EP-%d", r.EP)
	}
	if stage != StageNone {
		b.WriteByte('-')
		b.WriteString(string(stage))
	}
	b.WriteString(".trace.json.gz")
	return b.String()
}

// MergedFileName is the name of the file SGLang's merger writes.
func MergedFileName(profileID string) string {
	return "merged-" + profileID + ".trace.json.gz"
}

var rankPartRE = regexp.MustCompile(`(TP|DP|PP|EP)-(\d+)`)

// parseRankParts extracts the rank dimensions present in a trace file's
// base name, as SGLang's merger does with the same expression.
func parseRankParts(base string) (r Rank, present map[string]bool) {
	present = map[string]bool{}
	for _, m := range rankPartRE.FindAllStringSubmatch(base, -1) {
		n, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		present[m[1]] = true
		switch m[1] {
		case "TP":
			r.TP = n
		case "DP":
			r.DP = n
		case "PP":
			r.PP = n
		case "EP":
			r.EP = n
		}
	}
	return r, present
}

// profileIDNow formats a Unix time the way Python's str(time.time()) does:
// the shortest decimal that round-trips the float64.
func profileIDNow(unixNano int64) string {
	f := float64(unixNano) / 1e9
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
