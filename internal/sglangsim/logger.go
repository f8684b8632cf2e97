package sglangsim

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// logTimeLayout is Python's "%Y-%m-%d %H:%M:%S", SGLang's logging datefmt.
const logTimeLayout = "2006-01-02 15:04:05"

// lineLog writes SGLang-style log lines. SGLang configures every process with
// format "[%(asctime)s{prefix}] %(message)s"; the HTTP server process has an
// empty prefix and each scheduler a " DPd PPp TPt EPe" prefix.
type lineLog struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

func newLineLog(w io.Writer) *lineLog {
	if w == nil {
		w = io.Discard
	}
	return &lineLog{w: w, now: time.Now}
}

// printf writes one (possibly multi-line) record with the given prefix.
func (l *lineLog) printf(prefix, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "[%s%s] %s\n", l.now().Format(logTimeLayout), prefix, msg)
}

// raw writes text exactly as given (uvicorn tracebacks are printed without
// SGLang's prefix).
func (l *lineLog) raw(text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, text)
	if !strings.HasSuffix(text, "\n") {
		io.WriteString(l.w, "\n")
	}
}

// rankPrefix returns the scheduler log prefix SGLang builds in
// run_scheduler_process: DP only when data parallel, PP/TP/EP only when
// their size is above one.
func rankPrefix(a *ServerArgs, r Rank) string {
	var b strings.Builder
	if a.DPSize > 1 {
		fmt.Fprintf(&b, " DP%d", r.DP)
	}
	if a.PPSize > 1 {
		fmt.Fprintf(&b, " PP%d", r.PP)
	}
	if a.TPSize > 1 {
		fmt.Fprintf(&b, " TP%d", r.TP)
	}
	if a.EPSize > 1 {
		fmt.Fprintf(&b, " EP%d", r.EP)
	}
	return b.String()
}
