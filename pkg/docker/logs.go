package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"go.uber.org/zap"
)

// partialSuffix marks a server log still being written.
const partialSuffix = ".partial"

// lineRing keeps the last lines written to it, for error messages.
type lineRing struct {
	mu      sync.Mutex
	lines   []string
	next    int
	full    bool
	partial []byte
}

func newLineRing(n int) *lineRing { return &lineRing{lines: make([]string, n)} }

// maxLine bounds one remembered line; SGLang prints long tracebacks and
// server_args dumps.
const maxLine = 4096

func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data := p
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(r.partial) < maxLine {
				r.partial = append(r.partial, data[:min(len(data), maxLine-len(r.partial))]...)
			}
			break
		}
		line := append(r.partial, data[:min(i, maxLine)]...)
		r.add(strings.TrimRight(string(line[:min(len(line), maxLine)]), "\r"))
		r.partial = r.partial[:0]
		data = data[i+1:]
	}
	return len(p), nil
}

func (r *lineRing) add(s string) {
	r.lines[r.next] = s
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// last returns up to n lines, oldest first, including an unterminated
// last line.
func (r *lineRing) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if len(r.partial) > 0 {
		all = append(all, string(r.partial))
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

func joinLines(lines []string) string { return strings.Join(lines, "\n") }

// followLog streams the container's stdout and stderr, demultiplexed, into
// the log file and the tail ring until the container stops; then the file
// is synced and renamed from LogPath.partial to LogPath. When the daemon
// stops first, the .partial file stays: the container still runs, and the
// next daemon rewrites the whole log when it adopts or removes it.
func (m *Manager) followLog(srv *Server) {
	log := m.log.With(zap.String("container", srv.Name))
	var f *os.File
	if srv.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(srv.LogPath), 0o755); err != nil {
			log.Warn("cannot create the server log's directory; keeping only the tail", zap.Error(err))
		} else if f, err = os.OpenFile(srv.LogPath+partialSuffix, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644); err != nil {
			log.Warn("cannot write the server log; keeping only the tail", zap.Error(err))
			f = nil
		}
	}
	var w io.Writer = srv.tail
	if f != nil {
		w = io.MultiWriter(f, srv.tail)
	}
	rc, err := m.cli.ContainerLogs(m.base, srv.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err == nil {
		_, err = stdcopy.StdCopy(w, w, rc)
		rc.Close()
	}
	if err != nil && m.base.Err() == nil {
		log.Warn("server log stream broke", zap.Error(err))
	}
	if f == nil {
		return
	}
	if m.base.Err() != nil {
		f.Close()
		return
	}
	if err := finishFile(f, srv.LogPath); err != nil {
		log.Warn("cannot finish the server log", zap.Error(err))
	}
}

// finishFile syncs and closes f, then renames it to path.
func finishFile(f *os.File, path string) error {
	serr := f.Sync()
	cerr := f.Close()
	if serr != nil || cerr != nil {
		return fmt.Errorf("write %s: %v %v", f.Name(), serr, cerr)
	}
	return os.Rename(f.Name(), path)
}

// saveLog writes the container's whole log to path at once (for
// containers removed in Reconcile, whose follower died with the previous
// daemon).
func (m *Manager) saveLog(ctx context.Context, id, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	rc, err := m.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err == nil {
		_, err = stdcopy.StdCopy(f, f, rc)
		rc.Close()
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := finishFile(f, path); err != nil {
		os.Remove(f.Name())
		return err
	}
	os.Remove(path + partialSuffix)
	return nil
}
