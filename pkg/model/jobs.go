package model

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Jobs runs pulls for a long-lived process. A pull runs under the context
// given to NewJobs, not the caller's: a caller that goes away (a CLI that
// disconnects) detaches without cancelling it. Concurrent pulls of the
// same repo, commit and file selection share one download; late callers
// attach and get the latest progress at once.
type Jobs struct {
	c   *Cache
	ctx context.Context
	wg  sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job
}

// NewJobs returns a Jobs whose downloads stop when ctx ends.
func NewJobs(ctx context.Context, c *Cache) *Jobs {
	return &Jobs{c: c, ctx: ctx, jobs: map[string]*job{}}
}

// Cache returns the cache the jobs fill.
func (j *Jobs) Cache() *Cache { return j.c }

type job struct {
	req    PullRequest
	commit string
	done   chan struct{}
	snap   *Snapshot
	err    error

	mu     sync.Mutex
	last   *Progress
	subs   map[int]chan Progress
	nextID int
}

// publish hands a report to every subscriber, dropping it for those that
// lag: every report carries the whole picture, so none is essential.
func (jb *job) publish(p Progress) {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	jb.last = &p
	for _, ch := range jb.subs {
		select {
		case ch <- p:
		default:
		}
	}
}

func (jb *job) subscribe() (int, chan Progress) {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	ch := make(chan Progress, 32)
	if jb.last != nil {
		ch <- *jb.last
	}
	id := jb.nextID
	jb.nextID++
	jb.subs[id] = ch
	return id, ch
}

func (jb *job) unsubscribe(id int) {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	delete(jb.subs, id)
}

// jobKey identifies a download: repo, commit and the normalised selection.
func jobKey(repo, commit string, include, exclude []string) string {
	norm := func(p []string) string {
		if p == nil {
			return "<default>"
		}
		s := slices.Clone(p)
		slices.Sort(s)
		return strings.Join(slices.Compact(s), "\x00")
	}
	return fmt.Sprintf("%s@%s\x01%s\x01%s", repo, commit, norm(include), norm(exclude))
}

// Pull starts the download of req, or attaches to the one already
// running, and waits for it while ctx lasts. fn gets progress reports on
// the caller's goroutine. When ctx ends first, Pull returns ctx.Err() and
// the download goes on.
func (j *Jobs) Pull(ctx context.Context, req PullRequest, fn func(Progress)) (*Snapshot, error) {
	if req.Revision == "" {
		req.Revision = "main"
	}
	commit, err := j.c.Resolve(ctx, req.Repo, req.Revision)
	if err != nil {
		return nil, err
	}
	key := jobKey(req.Repo, commit, req.Include, req.Exclude)
	j.mu.Lock()
	jb, ok := j.jobs[key]
	if !ok {
		if err := j.ctx.Err(); err != nil {
			j.mu.Unlock()
			return nil, fmt.Errorf("pull %s: shutting down: %w", req.Repo, err)
		}
		jb = &job{req: req, commit: commit, done: make(chan struct{}), subs: map[int]chan Progress{}}
		j.jobs[key] = jb
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			jb.snap, jb.err = j.c.pull(j.ctx, req, commit, jb.publish)
			j.mu.Lock()
			delete(j.jobs, key)
			j.mu.Unlock()
			close(jb.done)
		}()
	}
	j.mu.Unlock()

	id, ch := jb.subscribe()
	defer jb.unsubscribe(id)
	deliver := func(p Progress) {
		if fn != nil {
			fn(p)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case p := <-ch:
			deliver(p)
		case <-jb.done:
			for {
				select {
				case p := <-ch:
					deliver(p)
				default:
					return jb.snap, jb.err
				}
			}
		}
	}
}

// Active returns the latest report of every running pull.
func (j *Jobs) Active() []Progress {
	j.mu.Lock()
	jobs := make([]*job, 0, len(j.jobs))
	for _, jb := range j.jobs {
		jobs = append(jobs, jb)
	}
	j.mu.Unlock()
	var out []Progress
	for _, jb := range jobs {
		jb.mu.Lock()
		if jb.last != nil {
			out = append(out, *jb.last)
		}
		jb.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Progress) int { return strings.Compare(a.Repo+a.Commit, b.Repo+b.Commit) })
	return out
}

// Wait blocks until every running pull has returned; call it after the
// context given to NewJobs ended.
func (j *Jobs) Wait() { j.wg.Wait() }
