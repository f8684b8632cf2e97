package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
)

const (
	// initialBuf is the reader's window; events are parsed in place inside it.
	initialBuf = 1 << 20
	// maxBuf bounds one JSON value (an event or a top-level key's value): the
	// window grows to hold it, and a longer one is reported as corrupt rather
	// than grown without limit.
	maxBuf = 256 << 20
	// maxDepth bounds nesting inside skipped values.
	maxDepth = 10000
)

// ErrTruncated is matched (errors.Is) by errors for input that ended before
// the JSON document did, such as a trace still being written or a cut copy.
var ErrTruncated = errors.New("trace truncated")

// SyntaxError reports malformed or truncated trace JSON. Offset counts bytes
// of the uncompressed document. It classifies as errdefs.ErrInvalidArgument,
// and as ErrTruncated when Truncated is set.
type SyntaxError struct {
	Offset    int64
	Events    int64 // complete events read before the error
	Msg       string
	Truncated bool
}

func (e *SyntaxError) Error() string {
	if e.Truncated {
		return fmt.Sprintf("trace truncated at byte %d after %d complete events: %s (the file is incomplete: wait for the profiler to finish writing it or re-export it)", e.Offset, e.Events, e.Msg)
	}
	return fmt.Sprintf("invalid trace JSON at byte %d after %d complete events: %s", e.Offset, e.Events, e.Msg)
}

// Is classifies the error for errors.Is.
func (e *SyntaxError) Is(target error) bool {
	return target == errdefs.ErrInvalidArgument || (e.Truncated && target == ErrTruncated)
}

var errShort = errors.New("short buffer")

// HeaderKey is one top-level key other than traceEvents with its raw value.
type HeaderKey struct {
	Name  string
	Value json.RawMessage
}

// DeviceProperties is the subset of Kineto's per-GPU properties the analysis
// reports.
type DeviceProperties struct {
	ID             int    `json:"id"`
	Name           string `json:"name"`
	TotalGlobalMem int64  `json:"totalGlobalMem"`
	ComputeMajor   int    `json:"computeMajor"`
	ComputeMinor   int    `json:"computeMinor"`
	NumSms         int    `json:"numSms"`
}

// DistributedInfo is torch.distributed's description of the rank.
type DistributedInfo struct {
	Backend     string `json:"backend"`
	Rank        int    `json:"rank"`
	WorldSize   int    `json:"world_size"`
	NcclVersion string `json:"nccl_version"`
}

// Header holds the document's top-level keys. Keys written before
// traceEvents are complete once the first event is returned; keys after it
// (Kineto writes traceName last) once Next has returned io.EOF.
type Header struct {
	// Keys lists every top-level key except traceEvents in input order.
	Keys []HeaderKey
	// BeforeEvents is how many of Keys came before traceEvents.
	BeforeEvents int

	SchemaVersion       int
	BaseTimeNanoseconds int64
	HasBaseTime         bool
	DisplayTimeUnit     string
	TraceName           string
	DeviceProperties    []DeviceProperties
	DistributedInfo     *DistributedInfo
	// ArrayForm is set for documents that are a bare array of events.
	ArrayForm bool
}

// Get returns the raw value of a top-level key.
func (h *Header) Get(name string) (json.RawMessage, bool) {
	for _, k := range h.Keys {
		if k.Name == name {
			return k.Value, true
		}
	}
	return nil, false
}

type readState uint8

const (
	stStart readState = iota
	stKeyFirst
	stKey
	stEventsFirst
	stEvents
	stEnd
	stDone
)

// Reader streams the events of a Kineto Chrome-trace JSON document without
// holding more than one event (plus a read window) in memory. It accepts the
// object form ({"traceEvents": [...], ...}) and the bare array form.
type Reader struct {
	src     io.Reader
	closers []io.Closer

	buf       []byte
	pos, end  int
	base      int64 // stream offset of buf[0]
	eof       bool
	state     readState
	events    int64
	err       error
	header    Header
	ev        Event
	stack     []byte
	compBytes *countingReader
	// skipArgs is the merge mode: args of non-metadata events, cat, tid
	// and dur are skipped, not parsed.
	skipArgs bool
}

// Open opens a trace file, gzip-compressed or not (detected from its first
// bytes, not its name). Close releases it.
func Open(path string) (*Reader, error) { return openTrace(path, true) }

// openTrace is Open; readahead decompresses on a goroutine of its own,
// ahead of the parser, which pays when cores would otherwise sit idle.
func openTrace(path string, readahead bool) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open trace %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open trace %s: %w", path, err)
	}
	r, err := newReader(f, readahead)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open trace %s: %w", path, err)
	}
	r.closers = append(r.closers, f)
	return r, nil
}

// NewReader returns a Reader over r, decompressing gzip input transparently.
func NewReader(r io.Reader) (*Reader, error) { return newReader(r, true) }

func newReader(r io.Reader, readahead bool) (*Reader, error) {
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 64<<10)
	rd := &Reader{buf: make([]byte, initialBuf), compBytes: cr}
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		var zr io.ReadCloser
		if readahead {
			zr, err = pgzip.NewReaderN(br, 1<<20, 3)
		} else {
			zr, err = gzip.NewReader(br)
		}
		if err != nil {
			return nil, &SyntaxError{Msg: "bad gzip header: " + err.Error()}
		}
		rd.src = zr
		rd.closers = append(rd.closers, zr)
	} else {
		rd.src = br
	}
	return rd, nil
}

// Close releases the underlying file and decompressor.
func (r *Reader) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		if err := r.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	r.closers = nil
	return errors.Join(errs...)
}

// Header returns the top-level keys read so far (see Header).
func (r *Reader) Header() *Header { return &r.header }

// Offset returns how many uncompressed bytes have been consumed.
func (r *Reader) Offset() int64 { return r.base + int64(r.pos) }

// CompressedOffset returns how many bytes of the underlying input were read.
func (r *Reader) CompressedOffset() int64 { return r.compBytes.n }

// Events returns how many events have been returned.
func (r *Reader) Events() int64 { return r.events }

// ReadHeader advances to the first event (reading every key before
// traceEvents) without consuming it. It returns io.EOF for a document
// without events.
func (r *Reader) ReadHeader() error {
	for r.err == nil && r.state < stEventsFirst {
		if err := r.step(false); err != nil {
			return err
		}
	}
	return r.err
}

// Next returns the next event, or io.EOF after the document ended cleanly.
// The event and its slices are valid until the next call.
func (r *Reader) Next() (*Event, error) {
	for {
		if r.err != nil {
			return nil, r.err
		}
		if r.state == stDone {
			return nil, io.EOF
		}
		wasEvent := r.state == stEventsFirst || r.state == stEvents
		if err := r.step(true); err != nil {
			return nil, err
		}
		if wasEvent && (r.state == stEvents) && r.ev.Raw != nil {
			ev := &r.ev
			r.events++
			return ev, nil
		}
	}
}

// step advances by one syntactic unit, refilling the window as needed.
func (r *Reader) step(consumeEvent bool) error {
	for {
		r.ev.Raw = nil
		err := r.unit(consumeEvent)
		if err == nil {
			return nil
		}
		if err != errShort {
			return r.fail(err)
		}
		if r.eof {
			if r.state == stEnd {
				r.state = stDone
				return nil
			}
			return r.fail(&SyntaxError{Offset: r.base + int64(r.end), Events: r.events, Truncated: true, Msg: "unexpected end of input " + r.where()})
		}
		if err := r.fill(); err != nil {
			return r.fail(err)
		}
	}
}

func (r *Reader) where() string {
	switch r.state {
	case stStart:
		return "before the document"
	case stKeyFirst, stKey:
		if r.header.BeforeEvents < len(r.header.Keys) || r.events > 0 {
			return "after traceEvents"
		}
		return "in the top-level object"
	case stEventsFirst, stEvents:
		return "inside traceEvents"
	}
	return "after the document"
}

func (r *Reader) fail(err error) error {
	var se *SyntaxError
	if errors.As(err, &se) && se.Events == 0 {
		se.Events = r.events
	}
	r.err = err
	return err
}

func (r *Reader) syntax(i int, msg string) error {
	return &SyntaxError{Offset: r.base + int64(i), Events: r.events, Msg: msg}
}

func (r *Reader) fill() error {
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:r.end])
		r.base += int64(r.pos)
		r.end = n
		r.pos = 0
	}
	if r.end == len(r.buf) {
		if len(r.buf) >= maxBuf {
			return r.syntax(r.end, fmt.Sprintf("a single JSON value exceeds %d MiB", maxBuf>>20))
		}
		nb := make([]byte, 2*len(r.buf))
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	for {
		n, err := r.src.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				r.eof = true
				return nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return &SyntaxError{Offset: r.base + int64(r.end), Events: r.events, Truncated: true, Msg: "compressed stream ends early"}
			}
			return &SyntaxError{Offset: r.base + int64(r.end), Events: r.events, Msg: "decompress: " + err.Error()}
		}
		if n > 0 {
			return nil
		}
	}
}

// unit parses one unit at r.pos according to the state and commits r.pos.
func (r *Reader) unit(consumeEvent bool) error {
	b := r.buf[:r.end]
	switch r.state {
	case stStart:
		i, err := r.ws(r.pos)
		if err != nil {
			return err
		}
		if b[i] == 0xEF { // UTF-8 byte order mark
			if i+3 > len(b) {
				return errShort
			}
			if b[i+1] == 0xBB && b[i+2] == 0xBF {
				i, err = r.ws(i + 3)
				if err != nil {
					return err
				}
			}
		}
		switch b[i] {
		case '{':
			r.state = stKeyFirst
		case '[':
			r.header.ArrayForm = true
			r.state = stEventsFirst
		default:
			return r.syntax(i, fmt.Sprintf("expected '{' or '[' at the start of a trace, found %q", b[i]))
		}
		r.pos = i + 1
		return nil
	case stKeyFirst, stKey:
		i, err := r.ws(r.pos)
		if err != nil {
			return err
		}
		if b[i] == '}' {
			r.pos = i + 1
			r.state = stEnd
			return nil
		}
		if r.state == stKey {
			if b[i] != ',' {
				return r.syntax(i, fmt.Sprintf("expected ',' or '}' after a top-level value, found %q", b[i]))
			}
			if i, err = r.ws(i + 1); err != nil {
				return err
			}
		}
		if b[i] != '"' {
			return r.syntax(i, fmt.Sprintf("expected a top-level key, found %q", b[i]))
		}
		kend, _, err := r.scanString(i)
		if err != nil {
			return err
		}
		key := string(b[i+1 : kend-1])
		if hasEscape(b[i+1 : kend-1]) {
			key = unescape(b[i+1 : kend-1])
		}
		if i, err = r.ws(kend); err != nil {
			return err
		}
		if b[i] != ':' {
			return r.syntax(i, "expected ':' after key "+key)
		}
		if i, err = r.ws(i + 1); err != nil {
			return err
		}
		if key == "traceEvents" {
			if b[i] != '[' {
				return r.syntax(i, "traceEvents is not an array")
			}
			r.pos = i + 1
			r.state = stEventsFirst
			r.header.BeforeEvents = len(r.header.Keys)
			return nil
		}
		vend, err := r.skipValue(i)
		if err != nil {
			return err
		}
		r.addHeaderKey(key, b[i:vend])
		r.pos = vend
		r.state = stKey
		return nil
	case stEventsFirst, stEvents:
		i, err := r.ws(r.pos)
		if err != nil {
			return err
		}
		if b[i] == ']' {
			r.pos = i + 1
			if r.header.ArrayForm {
				r.state = stEnd
			} else {
				r.state = stKey
			}
			return nil
		}
		if r.state == stEvents {
			if b[i] != ',' {
				return r.syntax(i, fmt.Sprintf("expected ',' or ']' between events, found %q", b[i]))
			}
			if i, err = r.ws(i + 1); err != nil {
				return err
			}
		}
		if !consumeEvent {
			// Leave the event for Next; ReadHeader stops here.
			return nil
		}
		if b[i] != '{' {
			return r.syntax(i, fmt.Sprintf("expected an event object, found %q", b[i]))
		}
		end, err := r.parseEvent(i)
		if err != nil {
			return err
		}
		r.pos = end
		r.state = stEvents
		return nil
	case stEnd:
		i, err := r.ws(r.pos)
		r.pos = i
		if err != nil {
			return err // errShort: at EOF this ends the document cleanly
		}
		return r.syntax(i, fmt.Sprintf("unexpected data after the end of the trace: %q", b[i]))
	}
	return nil
}

func (r *Reader) addHeaderKey(key string, raw []byte) {
	v := append(json.RawMessage(nil), raw...)
	r.header.Keys = append(r.header.Keys, HeaderKey{Name: key, Value: v})
	h := &r.header
	switch key {
	case "schemaVersion":
		_ = json.Unmarshal(v, &h.SchemaVersion)
	case "baseTimeNanoseconds":
		if n, ok := parseInt(bytes.Trim(v, `"`)); ok {
			h.BaseTimeNanoseconds, h.HasBaseTime = n, true
		}
	case "displayTimeUnit":
		_ = json.Unmarshal(v, &h.DisplayTimeUnit)
	case "traceName":
		_ = json.Unmarshal(v, &h.TraceName)
	case "deviceProperties":
		var d []DeviceProperties
		if json.Unmarshal(v, &d) == nil {
			h.DeviceProperties = d
		}
	case "distributedInfo":
		var d DistributedInfo
		if json.Unmarshal(v, &d) == nil {
			h.DistributedInfo = &d
		}
	}
}

func (r *Reader) ws(i int) (int, error) {
	b := r.buf[:r.end]
	for i < len(b) {
		switch b[i] {
		case ' ', '\n', '\r', '\t':
			i++
		default:
			return i, nil
		}
	}
	return i, errShort
}

// scanString expects b[p] == '"' and returns the index after the closing
// quote and whether an escaped quote was seen (other escapes are found by
// hasEscape on the strings that are kept).
func (r *Reader) scanString(p int) (int, bool, error) {
	b := r.buf[:r.end]
	i := p + 1
	esc := false
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, false, errShort
		}
		q := i + j
		if b[q-1] != '\\' {
			// The usual case. Whether the body holds escapes elsewhere is
			// asked only of kept strings (hasEscape), so skipped ones are
			// not scanned twice.
			return q + 1, esc, nil
		}
		n := 0
		for k := q - 1; k > p && b[k] == '\\'; k-- {
			n++
		}
		esc = true
		if n%2 == 0 {
			return q + 1, esc, nil
		}
		i = q + 1
	}
}

func hasEscape(body []byte) bool { return bytes.IndexByte(body, '\\') >= 0 }

func isNumChar(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// scanNumber returns the end of the number literal starting at p.
func (r *Reader) scanNumber(p int) (int, error) {
	b := r.buf[:r.end]
	i := p
	for i < len(b) && isNumChar(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, errShort
	}
	if i == p || !(b[p] == '-' || (b[p] >= '0' && b[p] <= '9')) {
		return 0, r.syntax(p, fmt.Sprintf("invalid number starting with %q", b[p]))
	}
	return i, nil
}

func (r *Reader) scanLiteral(p int) (int, error) {
	b := r.buf[:r.end]
	var lit string
	switch b[p] {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	case 'n':
		lit = "null"
	default:
		return 0, r.syntax(p, fmt.Sprintf("unexpected character %q where a value was expected", b[p]))
	}
	if p+len(lit) > len(b) {
		if bytes.HasPrefix([]byte(lit), b[p:]) {
			return 0, errShort
		}
		return 0, r.syntax(p, "invalid literal")
	}
	if string(b[p:p+len(lit)]) != lit {
		return 0, r.syntax(p, "invalid literal")
	}
	return p + len(lit), nil
}

// skipValue returns the end of the JSON value starting at p.
func (r *Reader) skipValue(p int) (int, error) {
	b := r.buf[:r.end]
	switch c := b[p]; {
	case c == '"':
		end, _, err := r.scanString(p)
		return end, err
	case c == '{' || c == '[':
		return r.skipComposite(p)
	case c == '-' || (c >= '0' && c <= '9'):
		return r.scanNumber(p)
	default:
		return r.scanLiteral(p)
	}
}

// structural marks the bytes skipComposite must look at.
var structural = func() (t [256]bool) {
	for _, c := range []byte(`"{}[]`) {
		t[c] = true
	}
	return t
}()

// skipComposite finds the end of an object or array, checking that brackets
// match and strings terminate.
func (r *Reader) skipComposite(p int) (int, error) {
	b := r.buf[:r.end]
	st := r.stack[:0]
	i := p
	for i < len(b) {
		for i < len(b) && !structural[b[i]] {
			i++
		}
		if i == len(b) {
			break
		}
		c := b[i]
		switch c {
		case '"':
			end, _, err := r.scanString(i)
			if err != nil {
				return 0, err
			}
			i = end
			continue
		case '{':
			st = append(st, '}')
		case '[':
			st = append(st, ']')
		case '}', ']':
			if len(st) == 0 || st[len(st)-1] != c {
				return 0, r.syntax(i, fmt.Sprintf("mismatched %q", c))
			}
			st = st[:len(st)-1]
			if len(st) == 0 {
				r.stack = st
				return i + 1, nil
			}
		}
		if len(st) > maxDepth {
			return 0, r.syntax(i, "nesting too deep")
		}
		i++
	}
	r.stack = st
	return 0, errShort
}

// parseString expects a string at p and returns its body and end.
func (r *Reader) parseString(p int) (body []byte, esc bool, end int, err error) {
	b := r.buf[:r.end]
	if b[p] != '"' {
		end, err = r.skipValue(p)
		return nil, false, end, err
	}
	end, _, err = r.scanString(p)
	if err != nil {
		return nil, false, 0, err
	}
	return b[p+1 : end-1], hasEscape(b[p+1 : end-1]), end, nil
}

// parseScalar returns the literal text of a number or the body of a string.
func (r *Reader) parseScalar(p int) (text []byte, isStr, esc bool, end int, err error) {
	b := r.buf[:r.end]
	switch c := b[p]; {
	case c == '"':
		end, _, err = r.scanString(p)
		if err != nil {
			return nil, false, false, 0, err
		}
		return b[p+1 : end-1], true, hasEscape(b[p+1 : end-1]), end, nil
	case c == '-' || (c >= '0' && c <= '9'):
		end, err = r.scanNumber(p)
		if err != nil {
			return nil, false, false, 0, err
		}
		return b[p:end], false, false, end, nil
	default:
		end, err = r.skipValue(p)
		return nil, false, false, end, err
	}
}

// parseEvent parses the object at p into r.ev and returns its end.
func (r *Reader) parseEvent(p int) (int, error) {
	b := r.buf[:r.end]
	ev := &r.ev
	*ev = Event{}
	i, err := r.ws(p + 1)
	if err != nil {
		return 0, err
	}
	if b[i] == '}' {
		ev.Raw = b[p : i+1]
		return i + 1, nil
	}
	for {
		if b[i] != '"' {
			return 0, r.syntax(i, fmt.Sprintf("expected a key in an event, found %q", b[i]))
		}
		kend, _, err := r.scanString(i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : kend-1]
		if i, err = r.ws(kend); err != nil {
			return 0, err
		}
		if b[i] != ':' {
			return 0, r.syntax(i, "expected ':' after an event key")
		}
		if i, err = r.ws(i + 1); err != nil {
			return 0, err
		}
		vs := i
		var ve int
		k := string(key)
		if r.skipArgs && (k == "cat" || k == "tid" || k == "dur") {
			k = "" // merge mode: not rewritten, not needed
		}
		switch k {
		case "ph":
			var s []byte
			s, _, ve, err = r.parseString(vs)
			if err == nil && len(s) > 0 {
				ev.Ph = s[0]
			}
		case "cat":
			ev.Cat, _, ve, err = r.parseString(vs)
		case "name":
			ev.NameRaw, ev.nameEscaped, ve, err = r.parseString(vs)
		case "pid", "tid":
			var id ID
			var isStr bool
			id.Raw, isStr, id.escaped, ve, err = r.parseScalar(vs)
			if err == nil {
				if !isStr && id.Raw != nil {
					id.Num, id.IsNum = parseInt(id.Raw)
				}
				if key[0] == 'p' {
					ev.Pid, ev.HasPid = id, true
					ev.pidSpan = span{int32(vs - p), int32(ve - p)}
				} else {
					ev.Tid, ev.HasTid = id, true
				}
			}
		case "ts", "dur":
			var t []byte
			t, _, _, ve, err = r.parseScalar(vs)
			if err == nil && t != nil {
				if ns, ok := parseNanos(t); ok {
					if key[0] == 't' {
						ev.Ts, ev.HasTs = ns, true
						ev.tsSpan = span{int32(vs - p), int32(ve - p)}
					} else {
						ev.Dur, ev.HasDur = ns, true
					}
				}
			}
		case "id":
			var t []byte
			var isStr bool
			t, isStr, _, ve, err = r.parseScalar(vs)
			if err == nil && t != nil {
				if v, ok := parseUint(t); ok && !isStr {
					ev.FlowID, ev.HasFlowID = v, true
				}
				ev.idSpan = span{int32(vs - p), int32(ve - p)}
			}
		case "args":
			if r.skipArgs && ev.Ph != 0 && ev.Ph != 'M' {
				// The merge rewrites args of metadata events only.
				ve, err = r.skipValue(vs)
				if err == nil {
					ev.ArgsRaw = b[vs:ve]
				}
			} else if b[vs] == '{' {
				ve, err = r.parseArgs(vs, p)
				if err == nil {
					ev.ArgsRaw = b[vs:ve]
				}
			} else {
				ve, err = r.skipValue(vs)
			}
		default:
			ve, err = r.skipValue(vs)
		}
		if err != nil {
			return 0, err
		}
		if i, err = r.ws(ve); err != nil {
			return 0, err
		}
		switch b[i] {
		case ',':
			if i, err = r.ws(i + 1); err != nil {
				return 0, err
			}
		case '}':
			ev.Raw = b[p : i+1]
			return i + 1, nil
		default:
			return 0, r.syntax(i, fmt.Sprintf("expected ',' or '}' in an event, found %q", b[i]))
		}
	}
}

// parseArgs reads the args object at p (event starts at evStart), picking
// out the keys the analysis and merge need.
func (r *Reader) parseArgs(p, evStart int) (int, error) {
	b := r.buf[:r.end]
	a := &r.ev.Args
	i, err := r.ws(p + 1)
	if err != nil {
		return 0, err
	}
	if b[i] == '}' {
		return i + 1, nil
	}
	for {
		if b[i] != '"' {
			return 0, r.syntax(i, fmt.Sprintf("expected a key in args, found %q", b[i]))
		}
		kend, _, err := r.scanString(i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : kend-1]
		if i, err = r.ws(kend); err != nil {
			return 0, err
		}
		if b[i] != ':' {
			return 0, r.syntax(i, "expected ':' after an args key")
		}
		if i, err = r.ws(i + 1); err != nil {
			return 0, err
		}
		vs := i
		var ve int
		var t []byte
		switch string(key) {
		case "correlation", "External id", "graph id":
			t, _, _, ve, err = r.parseScalar(vs)
			if err == nil && t != nil {
				if v, ok := parseUint(t); ok {
					switch key[0] {
					case 'c':
						a.Correlation, a.HasCorrelation = v, true
					case 'E':
						a.ExternalID, a.HasExternalID = v, true
					default:
						a.GraphID, a.HasGraphID = v, true
					}
				}
			}
		case "device", "stream", "sort_index":
			t, _, _, ve, err = r.parseScalar(vs)
			if err == nil && t != nil {
				if v, ok := parseInt(t); ok {
					switch key[0] {
					case 'd':
						a.Device, a.HasDevice = v, true
					case 's':
						if key[1] == 't' {
							a.Stream, a.HasStream = v, true
						} else {
							a.SortIndex, a.HasSortIndex = v, true
							r.ev.sortSpan = span{int32(vs - evStart), int32(ve - evStart)}
						}
					}
				}
			}
		case "name":
			a.Name, _, ve, err = r.parseString(vs)
		case "labels":
			a.Labels, _, ve, err = r.parseString(vs)
		default:
			ve, err = r.skipValue(vs)
		}
		if err != nil {
			return 0, err
		}
		if i, err = r.ws(ve); err != nil {
			return 0, err
		}
		switch b[i] {
		case ',':
			if i, err = r.ws(i + 1); err != nil {
				return 0, err
			}
		case '}':
			return i + 1, nil
		default:
			return 0, r.syntax(i, fmt.Sprintf("expected ',' or '}' in args, found %q", b[i]))
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
