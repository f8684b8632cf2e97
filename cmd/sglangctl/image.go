package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/api"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Pull and list the SGLang server image",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newImagePullCmd(g), newImageListCmd(g))
	return cmd
}

func newImagePullCmd(g *globals) *cobra.Command {
	var policy string
	var plain bool
	cmd := &cobra.Command{
		Use:   "pull [REF]",
		Short: "Pull the SGLang image (default: the configured docker.image)",
		Long: `Pull an image through the daemon's Docker engine, with the daemon's
credentials: the NGC API key (user $oauthtoken) for nvcr.io, otherwise the
Docker client config of the user sglangd runs as.

Progress is shown per layer on stderr: bars on a terminal, plain lines
otherwise (or with --plain). The pull runs in the daemon; interrupting this
command does not stop it (see 'sglangctl operation list'). The result (digest,
CUDA and SGLang versions from the image) goes to stdout.

Policies: always (default: ask the registry, download what changed),
if-missing (only when the image is not local), never (fail if missing).

Examples:
  sglangctl image pull
  sglangctl image pull nvcr.io/nvidia/sglang:26.01-py3
  sglangctl image pull --policy if-missing -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch policy {
			case api.PullAlways, api.PullIfMissing, api.PullNever:
			default:
				return cliutil.Usagef("--policy must be always, if-missing or never, got %q", policy)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			req := api.ImagePullRequest{Policy: policy}
			if len(args) == 1 {
				req.Ref = args[0]
			}
			var disp pullDisplay
			if f, ok := g.stderr.(*os.File); ok && !plain && hasTerminalWidth(f) {
				disp = newBarDisplay(g.stderr)
			} else {
				disp = newLineDisplay(g.stderr)
			}
			img, err := c.PullImage(cmd.Context(), req, func(ev api.ImagePullEvent) error {
				disp.event(ev)
				return nil
			})
			disp.finish(err == nil)
			if err != nil {
				if cmd.Context().Err() != nil {
					fmt.Fprintln(g.stderr, "Interrupted: the pull goes on in the daemon; follow it with 'sglangctl operation list' and 'operation watch ID'.")
				}
				return err
			}
			g.warnVersion(c)
			return g.print(img, func(w io.Writer) error { return printImages(w, []api.Image{*img}, true) })
		},
	}
	cmd.Flags().StringVar(&policy, "policy", api.PullAlways, "pull policy: always, if-missing or never")
	cmd.Flags().BoolVar(&plain, "plain", false, "plain progress lines even on a terminal")
	return cmd
}

func newImageListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the configured image and the local tags of its repository",
		Long: `Show whether the configured docker.image is present in the daemon's
Docker engine, and the local images of its repository with their digests
and the CUDA and SGLang versions read from their labels or environment.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			g.warnVersion(c)
			return g.print(l, func(w io.Writer) error {
				state := "present"
				if !l.Present {
					state = "not present (sglangctl image pull)"
				}
				fmt.Fprintf(w, "configured: %s, %s\n\n", l.Configured, state)
				return printImages(w, l.Images, false)
			})
		},
	}
}

func printImages(w io.Writer, imgs []api.Image, pulled bool) error {
	head := "REF\tDIGEST\tID\tSIZE\tCUDA\tSGLANG\tCREATED"
	if pulled {
		head += "\tPULLED\tCREDENTIALS"
	}
	fmt.Fprintln(w, head)
	for _, i := range imgs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s", i.Ref, dash(i.Digest), shortDigest(i.ID), units.HumanSizeWithPrecision(float64(i.Size), 3),
			dash(i.CUDAVersion), dash(i.SGLangVersion), dash(i.Created))
		if pulled {
			fmt.Fprintf(w, "\t%t\t%s", i.Pulled, dash(i.CredentialSource))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return dash(d)
}

// hasTerminalWidth reports whether f is a terminal with a known width,
// which the bars need (a pty without a size renders nothing).
func hasTerminalWidth(f *os.File) bool {
	if !isatty.IsTerminal(f.Fd()) {
		return false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	return err == nil && ws.Col > 0
}

// pullDisplay shows pull progress.
type pullDisplay interface {
	event(api.ImagePullEvent)
	// finish completes (ok) or abandons the display.
	finish(ok bool)
}

// layerDone reports statuses after which a layer has nothing left to do.
func layerDone(status string) bool {
	return status == "Pull complete" || status == "Already exists"
}

// barDisplay draws one bar per layer with mpb; image-level lines print
// above the bars.
type barDisplay struct {
	p     *mpb.Progress
	w     io.Writer
	mu    sync.Mutex
	bars  map[string]*layerBar
	after []string
}

type layerBar struct {
	bar    *mpb.Bar
	mu     sync.Mutex
	status string
}

func (l *layerBar) setStatus(s string) {
	l.mu.Lock()
	l.status = s
	l.mu.Unlock()
}

func (l *layerBar) getStatus() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

func newBarDisplay(w io.Writer, opts ...mpb.ContainerOption) *barDisplay {
	return &barDisplay{p: mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40)}, opts...)...), w: w, bars: map[string]*layerBar{}}
}

func (d *barDisplay) event(ev api.ImagePullEvent) {
	d.mu.Lock()
	if ev.Layer == "" {
		// Lines above the bars show at the next refresh, which never
		// comes once every bar is complete: keep the image's closing
		// lines (digest, status) for after the bars.
		if len(d.bars) == 0 {
			fmt.Fprintln(d.p, ev.Status)
		} else {
			d.after = append(d.after, ev.Status)
		}
		d.mu.Unlock()
		return
	}
	lb, ok := d.bars[ev.Layer]
	if !ok {
		lb = &layerBar{status: ev.Status}
		lb.bar = d.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(ev.Layer+" "), decor.Any(func(decor.Statistics) string { return lb.getStatus() }, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.OnComplete(decor.CountersKibiByte("% .1f / % .1f"), ""), decor.OnComplete(decor.Percentage(decor.WCSyncSpace), "")))
		d.bars[ev.Layer] = lb
	}
	d.mu.Unlock()
	if lb.bar.Completed() {
		return
	}
	lb.setStatus(ev.Status)
	switch {
	case ev.Status == "Already exists":
		lb.bar.SetTotal(1, false)
		lb.bar.SetCurrent(1)
	case layerDone(ev.Status):
		lb.bar.SetTotal(-1, true)
	case ev.Total > 0:
		lb.bar.SetTotal(ev.Total, false)
		lb.bar.SetCurrent(ev.Current)
	case ev.Status == "Download complete" || ev.Status == "Verifying Checksum":
		lb.bar.SetCurrent(lb.bar.Current())
	}
}

func (d *barDisplay) finish(ok bool) {
	d.mu.Lock()
	for _, lb := range d.bars {
		if ok {
			lb.bar.SetTotal(-1, true)
		} else {
			lb.bar.Abort(false)
		}
	}
	after := d.after
	d.mu.Unlock()
	d.p.Wait()
	for _, l := range after {
		fmt.Fprintln(d.w, l)
	}
}

// lineDisplay prints a line per layer status change, and downloads and
// extractions at each quarter, for logs and pipes.
type lineDisplay struct {
	w       io.Writer
	status  map[string]string
	quarter map[string]int64
}

func newLineDisplay(w io.Writer) *lineDisplay {
	return &lineDisplay{w: w, status: map[string]string{}, quarter: map[string]int64{}}
}

func (d *lineDisplay) event(ev api.ImagePullEvent) {
	if ev.Layer == "" {
		fmt.Fprintln(d.w, ev.Status)
		return
	}
	var q int64
	if ev.Total > 0 {
		q = 4 * ev.Current / ev.Total
	}
	if d.status[ev.Layer] == ev.Status && q <= d.quarter[ev.Layer] {
		return
	}
	d.status[ev.Layer], d.quarter[ev.Layer] = ev.Status, q
	if ev.Total > 0 {
		fmt.Fprintf(d.w, "%s: %s %s / %s\n", ev.Layer, ev.Status, units.HumanSizeWithPrecision(float64(ev.Current), 3), units.HumanSizeWithPrecision(float64(ev.Total), 3))
		return
	}
	fmt.Fprintf(d.w, "%s: %s\n", ev.Layer, ev.Status)
}

func (d *lineDisplay) finish(bool) {}
