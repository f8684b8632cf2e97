package sglangsim

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// exportJob is a snapshot of what one stop_profile exports.
type exportJob struct {
	id, prefix, dir string
	stage           Stage
	v2              bool
	withStack       bool
	recordShapes    bool
	start, stop     time.Time
	steps           []stepRecord
}

// globalRank numbers ranks the way SimOptions.CorruptRank and MissingRank
// select them: (dp*pp + pp)*tp + tp.
func (s *Server) globalRank(r Rank) int {
	a := &s.cfg.Args
	return (r.DP*a.PPSize+r.PP)*a.TPSize + r.TP
}

// exportRank writes one rank's trace like torch's export_chrome_trace does
// for a .gz path: Kineto saves uncompressed JSON to a temporary file in
// TMPDIR, which is then gzip-streamed into the final path (so the final file
// exists early and grows) and removed.
func (s *Server) exportRank(ctx context.Context, job exportJob, r Rank) error {
	o := &s.opts
	gr := s.globalRank(r)
	if o.MissingRank != nil && *o.MissingRank == gr {
		return nil
	}
	name := TraceFileName(job.prefix, job.id, &s.cfg.Args, r, job.stage)
	if job.v2 {
		// V2 names: [<prefix>-]<id>-TP-<tp>-<prefill|decode>, no DP/PP/EP
		// (so ranks overwrite each other before sglang#25446).
		name = TraceFileName(job.prefix, job.id, &ServerArgs{TPSize: 1, DPSize: 1, PPSize: 1, EPSize: 1}, r, StageNone)
		name = strings.TrimSuffix(name, ".trace.json.gz") + "-" + (&profiler{v2: true}).stageName(job.stage) + ".trace.json.gz"
	}
	final := filepath.Join(job.dir, name)
	return s.exportTo(ctx, job, r, final)
}

func (s *Server) exportTo(ctx context.Context, job exportJob, r Rank, final string) error {
	o := &s.opts
	gr := s.globalRank(r)
	tmpDir := s.cfg.Env["TMPDIR"]
	if tmpDir == "" {
		tmpDir = os.TempDir()
	}
	tmp, err := os.CreateTemp(tmpDir, "tmp*.json")
	if err != nil {
		return fmt.Errorf("stage trace json in TMPDIR %s: %w", tmpDir, err)
	}
	defer os.Remove(tmp.Name())
	spec := s.traceSpec(job, r)
	spec.traceName = tmp.Name()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err := writeTrace(bw, spec); err != nil {
		tmp.Close()
		return fmt.Errorf("write trace json %s: %w", tmp.Name(), err)
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write trace json %s: %w", tmp.Name(), err)
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return err
	}
	defer tmp.Close()

	out, err := os.Create(final)
	if err != nil {
		return fmt.Errorf("create trace %s: %w", final, err)
	}
	gz := gzip.NewWriter(out)
	buf := make([]byte, 256<<10)
	var copied int64
	hang := o.HangStopProfile
	for {
		n, rerr := tmp.Read(buf)
		if n > 0 {
			if _, err := gz.Write(buf[:n]); err != nil {
				out.Close()
				return fmt.Errorf("write trace %s: %w", final, err)
			}
			copied += int64(n)
			if err := gz.Flush(); err != nil {
				out.Close()
				return fmt.Errorf("write trace %s: %w", final, err)
			}
			if d := time.Duration(float64(o.ExportPerMB) * float64(n) / (1 << 20)); d > 0 {
				if err := sleepCtx(ctx, d); err != nil {
					out.Close()
					return err
				}
			}
			if hang && copied*2 >= size {
				// The export wedges half-way, leaving a growing-then-stuck file.
				<-ctx.Done()
				out.Close()
				return ctx.Err()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			return fmt.Errorf("read staged trace %s: %w", tmp.Name(), rerr)
		}
	}
	if hang {
		<-ctx.Done()
		out.Close()
		return ctx.Err()
	}
	if err := gz.Close(); err != nil {
		out.Close()
		return fmt.Errorf("write trace %s: %w", final, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close trace %s: %w", final, err)
	}
	if o.CorruptRank != nil && *o.CorruptRank == gr {
		if err := damage(final, o.CorruptMode); err != nil {
			return fmt.Errorf("damage trace %s: %w", final, err)
		}
	}
	return nil
}

// writeRPD writes the TP0 rpd-<time>-TP-<tp>.trace.json.gz file of the RPD
// activity with the same content as the Kineto trace.
func (s *Server) writeRPD(ctx context.Context, job exportJob, r Rank) {
	name := fmt.Sprintf("rpd-%s-TP-%d.trace.json.gz", profileIDNow(job.start.UnixNano()), r.TP)
	if err := s.exportTo(ctx, job, r, filepath.Join(job.dir, name)); err != nil {
		s.log.printf(rankPrefix(&s.cfg.Args, r), "Failed to export rpd trace: %v", err)
	}
}

// damage applies a CorruptMode to a finished gzip file.
func damage(path, mode string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	switch mode {
	case "corrupt":
		// Flip bytes in the deflate stream past the 10-byte header; the
		// reader fails with a flate or checksum error.
		for i := 10 + (len(data)-10)/2; i < len(data)-8 && i < 10+(len(data)-10)/2+64; i++ {
			data[i] ^= 0x5a
		}
	default:
		data = data[:len(data)/2]
	}
	return os.WriteFile(path, data, 0o644)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
