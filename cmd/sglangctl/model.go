package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/api"
)

// exitInterrupted is the shell's code for a command stopped by SIGINT.
const exitInterrupted = 130

func newModelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Download, list, verify and remove Hugging Face models",
		Long: `Manage the daemon's Hugging Face model cache (model.cache_dir, laid out as
huggingface_hub's own cache, so SGLang reads it directly).

Downloads run inside the daemon: they resume after restarts, and a pull that
is interrupted (Ctrl-C, a lost connection) keeps going in the daemon; pulling
the same model again attaches to it.`,
	}
	cmd.AddCommand(newModelPullCmd(g), newModelListCmd(g), newModelRmCmd(g), newModelVerifyCmd(g))
	return cmd
}

func newModelPullCmd(g *globals) *cobra.Command {
	var req api.ModelPullRequest
	var plain bool
	cmd := &cobra.Command{
		Use:   "pull REPO",
		Short: "Download a model into the cache",
		Long: `Download REPO (org/name) at --revision into the daemon's model cache and
print its snapshot directory, which SGLang takes as --model-path.

Only the files SGLang needs are fetched by default (model.include /
model.exclude in the daemon's config: safetensors weights, configs and
tokenizer files, not *.bin or *.pth duplicates). --include and --exclude
replace those lists; patterns are fnmatch globs over repository paths, where
"*" also matches "/".

Progress goes to stderr: bars on a terminal (overall and per file, with
bytes, rate and ETA), plain lines otherwise.`,
		Example: `  sglangctl model pull Qwen/Qwen2.5-7B-Instruct
  sglangctl model pull meta-llama/Llama-3.1-8B-Instruct --revision 0e9e39f
  sglangctl model pull org/model --include '*.safetensors' --include '*.json'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Repo = args[0]
			if !cmd.Flags().Changed("include") {
				req.Include = nil
			}
			if !cmd.Flags().Changed("exclude") {
				req.Exclude = nil
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			disp := newModelDisplay(g.stderr, plain)
			var opID string
			snap, err := c.PullModel(cmd.Context(), req, func(u api.ModelPullUpdate) {
				opID = u.Op
				disp.event(u)
			})
			disp.finish(err == nil)
			if err != nil {
				if errors.Is(err, context.Canceled) || cmd.Context().Err() != nil {
					fmt.Fprintf(g.stderr, "Detached: the daemon keeps downloading %s (operation %s); run the same pull again, or 'sglangctl operation watch %s', to follow it.\n",
						req.Repo, opID, opID)
					return &cliutil.ExitError{Code: exitInterrupted}
				}
				return err
			}
			g.warnVersion(c)
			return g.print(snap, func(w io.Writer) error {
				fmt.Fprintln(w, "REPO\tCOMMIT\tFILES\tSIZE\tPATH")
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", snap.Repo, short(snap.Commit), snap.Files, sizeText(snap.SizeBytes), snap.Path)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Revision, "revision", "main", "branch, tag or commit")
	f.StringArrayVar(&req.Include, "include", nil, "glob of files to download (repeatable; replaces model.include)")
	f.StringArrayVar(&req.Exclude, "exclude", nil, "glob of files to skip (repeatable; replaces model.exclude)")
	f.BoolVar(&plain, "plain", false, "print progress as plain lines even on a terminal")
	return cmd
}

func newModelListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the models in the cache and running downloads",
		Long: `List every downloaded snapshot: repo, the revisions (branches, tags) that
point at it, commit, size, and whether sglangd has verified every file's hash
(during the download or with 'model verify') and none changed since.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.ListModels(cmd.Context())
			if err != nil {
				return err
			}
			g.warnVersion(c)
			return g.print(l, func(w io.Writer) error {
				fmt.Fprintln(w, "REPO\tREVISION\tCOMMIT\tFILES\tSIZE\tVERIFIED")
				for _, m := range l.Models {
					rev := strings.Join(m.Revisions, ",")
					if rev == "" {
						rev = "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", m.Repo, rev, short(m.Commit), m.Files, sizeText(m.SizeBytes), yesNo(m.Verified))
				}
				for _, p := range l.Pulls {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\tdownloading %s\n", p.Repo, p.Revision, short(p.Commit), p.Files,
						sizeText(p.TotalBytes), percent(p.CompletedBytes, p.TotalBytes))
				}
				return nil
			})
		},
	}
}

func newModelRmCmd(g *globals) *cobra.Command {
	var revision string
	cmd := &cobra.Command{
		Use:     "rm REPO",
		Aliases: []string{"remove"},
		Short:   "Remove a model from the cache",
		Long: `Remove REPO from the cache: everything (snapshots, blobs, partial downloads)
or, with --revision, one snapshot and the blobs no other snapshot uses.
A model being downloaded cannot be removed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RemoveModel(cmd.Context(), args[0], revision); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Removed %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&revision, "revision", "", "remove only this commit or ref's snapshot")
	return cmd
}

func newModelVerifyCmd(g *globals) *cobra.Command {
	var revision string
	cmd := &cobra.Command{
		Use:   "verify REPO",
		Short: "Re-hash a downloaded model's files",
		Long: `Re-hash every file of REPO's snapshot (main, --revision, or the only one)
against its blob name: sha256 for LFS files, git's blob sha1 otherwise. A
corrupt file is removed from the snapshot so SGLang cannot load it; pull the
model again to fetch it. Exit code 1 if anything was wrong.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rep, err := c.VerifyModel(cmd.Context(), api.ModelVerifyRequest{Repo: args[0], Revision: revision})
			if err != nil {
				return err
			}
			g.warnVersion(c)
			if err := g.print(rep, func(w io.Writer) error {
				status := "OK"
				if !rep.OK {
					status = "FAILED"
				}
				fmt.Fprintf(w, "%s@%s\t%s\t%d files, %s\n", rep.Repo, short(rep.Commit), status, rep.Files, sizeText(rep.Bytes))
				for _, p := range rep.Problems {
					fmt.Fprintf(w, "  %s\t%s\n", p.Path, p.Problem)
				}
				return nil
			}); err != nil {
				return err
			}
			if !rep.OK {
				fmt.Fprintf(g.stderr, "Hint: run 'sglangctl model pull %s' to fetch the removed files again\n", rep.Repo)
				return &cliutil.ExitError{Code: cliutil.ExitFailure}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&revision, "revision", "", "commit or ref to verify (default main, or the only snapshot)")
	return cmd
}

// modelDisplay renders pull events on stderr.
type modelDisplay interface {
	event(api.ModelPullUpdate)
	finish(ok bool)
}

func newModelDisplay(w io.Writer, plain bool) modelDisplay {
	if f, ok := w.(*os.File); ok && !plain && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return newModelBars(w)
	}
	return &modelLines{w: w, done: map[string]bool{}, every: 5 * time.Second}
}

// modelBars draws an overall bar and one bar per file in flight. The
// decorators run on mpb's goroutines and read the latest event through
// atomic pointers: taking mu there could deadlock with a bar update made
// under mu.
type modelBars struct {
	p    *mpb.Progress
	last atomic.Pointer[api.ModelPullEvent]

	mu      sync.Mutex
	overall *mpb.Bar
	files   map[string]*modelFileBar
}

type modelFileBar struct {
	bar  *mpb.Bar
	last atomic.Pointer[api.ModelFileProgress]
}

func newModelBars(w io.Writer, opts ...mpb.ContainerOption) *modelBars {
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150 * time.Millisecond)}, opts...)
	return &modelBars{p: mpb.New(opts...), files: map[string]*modelFileBar{}}
}

func (d *modelBars) event(u api.ModelPullUpdate) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case u.Overall != nil:
		d.overallEvent(*u.Overall)
	case u.File != nil:
		d.fileEvent(*u.File)
	}
}

func (d *modelBars) overallEvent(ev api.ModelPullEvent) {
	d.last.Store(&ev)
	if ev.TotalBytes <= 0 {
		return
	}
	if d.overall == nil {
		name := ev.Repo
		d.overall = d.p.AddBar(ev.TotalBytes, mpb.BarPriority(-1),
			mpb.PrependDecorators(decor.Name(name, decor.WC{W: len(name) + 1, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				e := d.last.Load()
				return fmt.Sprintf(" %s / %s  %s/s  ETA %s  %d/%d files", sizeText(e.CompletedBytes), sizeText(e.TotalBytes),
					sizeText(int64(e.BytesPerSecond)), etaText(e.ETASeconds), e.FilesDone, e.Files)
			})))
	}
	d.overall.SetTotal(ev.TotalBytes, false)
	d.overall.SetCurrent(ev.CompletedBytes)
}

func (d *modelBars) fileEvent(f api.ModelFileProgress) {
	fb := d.files[f.Path]
	if fb == nil {
		if f.State != api.ModelFileDownloading && f.State != api.ModelFileVerifying {
			return
		}
		fb = d.addFile(f)
	}
	fb.last.Store(&f)
	switch f.State {
	case api.ModelFileDone, api.ModelFileCached:
		d.finishFile(f.Path, fb)
	case api.ModelFileFailed:
		fb.bar.Abort(false)
		delete(d.files, f.Path)
	default:
		fb.bar.SetCurrent(f.CompletedBytes)
	}
}

func (d *modelBars) addFile(f api.ModelFileProgress) *modelFileBar {
	fb := &modelFileBar{}
	fb.last.Store(&f)
	name := "  " + f.Path
	if len(name) > 48 {
		name = "  …" + f.Path[len(f.Path)-45:]
	}
	fb.bar = d.p.AddBar(f.SizeBytes, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(name, decor.WC{W: 49, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			l := fb.last.Load()
			if l.State == api.ModelFileVerifying {
				return " verifying"
			}
			retry := ""
			if l.Retries > 0 {
				retry = fmt.Sprintf("  retries %d", l.Retries)
			}
			return fmt.Sprintf(" %s / %s  %s/s  ETA %s%s", sizeText(l.CompletedBytes), sizeText(l.SizeBytes),
				sizeText(int64(l.BytesPerSecond)), etaText(l.ETASeconds), retry)
		})))
	d.files[f.Path] = fb
	return fb
}

func (d *modelBars) finishFile(path string, fb *modelFileBar) {
	fb.bar.SetTotal(fb.last.Load().SizeBytes, true)
	delete(d.files, path)
}

func (d *modelBars) finish(ok bool) {
	d.mu.Lock()
	for p, fb := range d.files {
		fb.bar.Abort(true)
		delete(d.files, p)
	}
	if d.overall != nil {
		if ok {
			d.overall.SetTotal(d.last.Load().TotalBytes, true)
		} else {
			d.overall.Abort(false)
		}
	}
	d.mu.Unlock()
	d.p.Wait()
}

// modelLines prints plain lines: phase changes, each finished file, and
// an overall line every few seconds.
type modelLines struct {
	w     io.Writer
	phase string
	done  map[string]bool
	every time.Duration
	last  time.Time
	ev    api.ModelPullEvent
}

func (d *modelLines) event(u api.ModelPullUpdate) {
	if f := u.File; f != nil {
		if (f.State == api.ModelFileDone || f.State == api.ModelFileFailed) && !d.done[f.Path] {
			d.done[f.Path] = true
			fmt.Fprintf(d.w, "  %-6s %s (%s)\n", f.State, f.Path, sizeText(f.SizeBytes))
		}
		return
	}
	ev := *u.Overall
	d.ev = ev
	if ev.Phase != d.phase {
		d.phase = ev.Phase
		switch ev.Phase {
		case api.ModelPhaseResolving:
			fmt.Fprintf(d.w, "Resolving %s@%s\n", ev.Repo, ev.Revision)
		case api.ModelPhaseDownloading:
			fmt.Fprintf(d.w, "Downloading %s@%s: %d files, %s (%s already here)\n", ev.Repo, short(ev.Commit), ev.Files,
				sizeText(ev.TotalBytes), sizeText(ev.CompletedBytes))
		}
	}
	if ev.Phase == api.ModelPhaseDownloading && time.Since(d.last) >= d.every {
		d.last = time.Now()
		d.progressLine()
	}
}

func (d *modelLines) progressLine() {
	e := d.ev
	fmt.Fprintf(d.w, "  %s %s / %s  %s/s  ETA %s  %d/%d files\n", percent(e.CompletedBytes, e.TotalBytes),
		sizeText(e.CompletedBytes), sizeText(e.TotalBytes), sizeText(int64(e.BytesPerSecond)), etaText(e.ETASeconds), e.FilesDone, e.Files)
}

func (d *modelLines) finish(ok bool) {
	if ok && d.ev.TotalBytes > 0 {
		fmt.Fprintf(d.w, "Done: %s in %s, %s downloaded\n", sizeText(d.ev.TotalBytes),
			(time.Duration(d.ev.ElapsedSeconds * float64(time.Second))).Round(100*time.Millisecond), sizeText(d.ev.DownloadedBytes))
	}
}

func sizeText(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f", decor.SizeB1024(n))
}

func etaText(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s) * time.Second).String()
}

func percent(done, total int64) string {
	if total <= 0 {
		return "  0%"
	}
	return fmt.Sprintf("%3.0f%%", float64(done)*100/float64(total))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
