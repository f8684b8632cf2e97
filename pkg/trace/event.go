package trace

import (
	"encoding/json"
	"strconv"
)

// ID is a pid or tid, which Kineto writes as a number for OS and device ids
// and as a string for synthetic tracks ("Spans", "Traces", "" and the
// "[TP00] 0" labels of merged traces).
type ID struct {
	// Raw is the literal: the digits of a number, or the content of a string
	// without its quotes (still JSON-escaped). Valid until the next Next.
	Raw []byte
	// Num is the numeric value when IsNum.
	Num   int64
	IsNum bool
	// escaped reports whether a string literal holds escape sequences.
	escaped bool
}

// String returns the id as text: the number, or the unescaped string.
func (id ID) String() string {
	if id.IsNum {
		return strconv.FormatInt(id.Num, 10)
	}
	if id.escaped {
		return unescape(id.Raw)
	}
	return string(id.Raw)
}

// Args holds the few event arguments the analysis and merge use; the full
// object stays available as Event.ArgsRaw.
type Args struct {
	Correlation    uint64
	HasCorrelation bool
	ExternalID     uint64
	HasExternalID  bool
	Device         int64
	HasDevice      bool
	Stream         int64
	HasStream      bool
	GraphID        uint64
	HasGraphID     bool
	SortIndex      int64
	HasSortIndex   bool
	// Name and Labels are the string arguments of process_name/thread_name
	// and process_labels metadata events (raw, JSON-escaped).
	Name   []byte
	Labels []byte
}

// Event is one element of traceEvents. Byte slices point into the reader's
// buffer and are valid only until the next call to Next; copy what you keep.
type Event struct {
	// Raw is the whole JSON object as it appeared in the input.
	Raw []byte
	// Ph is the phase letter ('X', 'i', 's', 'f', 'M', 'C', ...), 0 if absent.
	Ph byte
	// Cat and NameRaw are raw string contents (possibly JSON-escaped; see Name).
	Cat     []byte
	NameRaw []byte
	Pid     ID
	Tid     ID
	HasPid  bool
	HasTid  bool
	// Ts and Dur are in nanoseconds, relative to the trace's
	// baseTimeNanoseconds when the file has one.
	Ts     int64
	Dur    int64
	HasTs  bool
	HasDur bool
	// FlowID is the "id" of flow events, when numeric.
	FlowID    uint64
	HasFlowID bool
	Args      Args
	// ArgsRaw is the args object as it appeared, nil when absent.
	ArgsRaw []byte

	nameEscaped bool
	// spans of values inside Raw, for the merge's in-place rewriting.
	pidSpan, tsSpan, idSpan, sortSpan span
}

type span struct{ start, end int32 }

func (s span) ok() bool { return s.end > s.start }

// Name returns the event name, unescaped.
func (e *Event) Name() string {
	if e.nameEscaped {
		return unescape(e.NameRaw)
	}
	return string(e.NameRaw)
}

// End returns Ts+Dur.
func (e *Event) End() int64 { return e.Ts + e.Dur }

// unescape decodes a JSON string body (without quotes). Invalid escapes are
// kept verbatim: the tokenizer already rejected malformed input.
func unescape(b []byte) string {
	q := make([]byte, 0, len(b)+2)
	q = append(q, '"')
	q = append(q, b...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return string(b)
	}
	return s
}
