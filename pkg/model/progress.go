package model

import (
	"sort"
	"sync/atomic"
	"time"
)

// Phase is the stage a pull is in.
type Phase string

// Pull phases, in order.
const (
	PhaseResolving   Phase = "resolving"
	PhaseListing     Phase = "listing"
	PhaseDownloading Phase = "downloading"
	PhaseDone        Phase = "done"
)

// FileState is the stage of one file.
type FileState string

// File states. Cached means the blob was already present.
const (
	FileQueued      FileState = "queued"
	FileDownloading FileState = "downloading"
	FileVerifying   FileState = "verifying"
	FileDone        FileState = "done"
	FileCached      FileState = "cached"
	FileFailed      FileState = "failed"
)

// Progress is one report of a pull. Reports come from one goroutine, in
// order, at most every Options.ProgressInterval plus one per file state
// change; the last one has Phase done (on success).
type Progress struct {
	Repo     string
	Revision string
	Commit   string
	Phase    Phase
	// Files is the number of selected files; FilesDone of them are in
	// place (downloaded or cached).
	Files, FilesDone int
	// Total is the bytes of the selected files; Completed of them are on
	// disk (cached, resumed or downloaded).
	Total, Completed int64
	// Downloaded is the bytes received by this pull.
	Downloaded int64
	// Rate is bytes per second over the last few seconds; ETA derives
	// from it and is 0 when unknown.
	Rate    float64
	ETA     time.Duration
	Elapsed time.Duration
	// Active lists files being downloaded or verified, and files that
	// finished since the previous report. A file that leaves the list
	// without a final state has finished too (reports may be dropped by
	// a slow consumer).
	Active []FileProgress
}

// FileProgress is the state of one file.
type FileProgress struct {
	Path      string
	Size      int64
	Completed int64
	Rate      float64
	ETA       time.Duration
	State     FileState
	// Retries counts retried attempts (errors, stalls, expired URLs).
	Retries int
}

// rateMeter computes a rate over a sliding window of samples.
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	t time.Time
	n int64
}

const rateWindow = 5 * time.Second

// observe records the cumulative count n at t and returns the rate.
func (m *rateMeter) observe(t time.Time, n int64) float64 {
	m.samples = append(m.samples, rateSample{t, n})
	cut := 0
	for cut < len(m.samples)-2 && t.Sub(m.samples[cut+1].t) >= rateWindow {
		cut++
	}
	m.samples = m.samples[cut:]
	first := m.samples[0]
	dt := t.Sub(first.t).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(n-first.n) / dt
}

func eta(remaining int64, rate float64) time.Duration {
	if rate <= 0 || remaining <= 0 {
		return 0
	}
	return time.Duration(float64(remaining) / rate * float64(time.Second)).Round(time.Second)
}

// fileTask is one selected file of a pull and its live counters, shared
// by the downloader (writes) and the reporter (reads).
type fileTask struct {
	rf      remoteFile
	run     *pullRun
	have    atomic.Int64 // bytes on disk
	fetched atomic.Int64 // bytes received by this pull
	retries atomic.Int64
	state   atomic.Value // FileState

	// reporter-only
	meter    rateMeter
	reported FileState
}

func (t *fileTask) getState() FileState {
	if s, ok := t.state.Load().(FileState); ok {
		return s
	}
	return FileQueued
}

func (t *fileTask) setState(s FileState) {
	if t.getState() == s {
		return
	}
	t.state.Store(s)
	t.run.poke()
}

func (t *fileTask) setHave(n int64) { t.have.Store(n) }

func (t *fileTask) add(n int64) {
	t.have.Add(n)
	t.fetched.Add(n)
	t.run.downloaded.Add(n)
	t.run.c.metrics.bytes.Add(float64(n))
}

// restart forgets the bytes of a discarded blob.
func (t *fileTask) restart() { t.have.Store(0) }

// report builds a Progress from the pull's counters. It runs on the
// reporter goroutine only.
func (r *pullRun) report(now time.Time, phase Phase) Progress {
	p := Progress{Repo: r.repo, Revision: r.rev, Commit: r.commit, Phase: phase,
		Files: len(r.files), Downloaded: r.downloaded.Load(), Elapsed: now.Sub(r.started).Round(time.Millisecond)}
	for _, f := range r.files {
		p.Total += f.rf.Size
		have := f.have.Load()
		st := f.getState()
		switch st {
		case FileDone, FileCached:
			have = f.rf.Size
			p.FilesDone++
		}
		p.Completed += have
		active := st == FileDownloading || st == FileVerifying
		finished := (st == FileDone || st == FileFailed) && f.reported != st
		if !active && !finished {
			continue
		}
		fp := FileProgress{Path: f.rf.Path, Size: f.rf.Size, Completed: have, State: st, Retries: int(f.retries.Load())}
		if active {
			fp.Rate = f.meter.observe(now, f.fetched.Load())
			fp.ETA = eta(f.rf.Size-have, fp.Rate)
		}
		f.reported = st
		p.Active = append(p.Active, fp)
	}
	sort.Slice(p.Active, func(i, j int) bool { return p.Active[i].Path < p.Active[j].Path })
	p.Rate = r.meter.observe(now, p.Downloaded)
	p.ETA = eta(p.Total-p.Completed, p.Rate)
	return p
}
