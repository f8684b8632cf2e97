package trace

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sync/errgroup"
)

// The parallel gzip merge. A gzip member is one DEFLATE stream, and a
// DEFLATE stream may be cut into pieces compressed independently as long as
// every piece but the last ends byte-aligned in a non-final block (a sync
// flush) and none refers back into another. So each rank's events are
// rewritten and compressed by their own worker into a spool, and the
// writer concatenates: gzip header, head, rank sections (with the ","
// between them) in rank order, trailer ending in the final block, then the
// CRC-32 combined from the pieces' CRCs and the total length. The output
// is the same single gzip member any decoder reads, holding the same JSON
// as the sequential Merge.

// spoolBuffers bounds the chunks in flight between a worker's parser and
// its compressor.
const spoolBuffers = 4

// section is one rank's compressed events.
type section struct {
	out rankOutput
	// spool holds the raw DEFLATE blocks, ending in a sync flush. It is
	// unlinked as soon as created: closing it frees it, whatever happens.
	spool *os.File
	crc   uint32
	size  int64 // uncompressed
	done  chan struct{}
}

// errSectionsStopped tells that the writer stopped because the workers'
// context ended; the workers' error says why.
var errSectionsStopped = errors.New("merge workers stopped")

// writeGzip writes the merged document to w as one gzip member, rewriting
// and compressing the files in parallel. Spools go to dir.
func (p *mergePlan) writeGzip(ctx context.Context, w io.Writer, dir string, level int, opts MergeOptions) error {
	n := len(p.files)
	secs := make([]*section, n)
	for i := range secs {
		secs[i] = &section{done: make(chan struct{})}
	}
	workers := min(opts.concurrency(), n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	var mu sync.Mutex
	finished := 0
	// Workers take files in rank order, so the writer can copy early
	// sections while later ones are still being compressed.
	for range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				s := secs[i]
				if err := p.compressRank(gctx, i, dir, level, s); err != nil {
					return err
				}
				close(s.done)
				if opts.Progress != nil {
					mu.Lock()
					finished++
					opts.Progress(MergeProgress{File: p.files[i].Path, Done: finished, Total: n, Events: s.out.events})
					mu.Unlock()
				}
			}
		})
	}
	werr := p.writeSections(ctx, gctx, w, secs, level)
	if werr != nil && werr != errSectionsStopped {
		cancel() // the writer failed: stop the workers
	}
	gerr := g.Wait()
	for _, s := range secs {
		if s.spool != nil {
			_ = s.spool.Close()
		}
	}
	switch {
	case werr != nil && werr != errSectionsStopped:
		return werr
	case gerr != nil:
		return gerr // names the file
	case werr != nil && ctx.Err() != nil:
		return ctx.Err() // cancelled after the last worker finished
	}
	return werr
}

// compressRank rewrites file idx into s.spool as raw DEFLATE ending in a
// sync flush, with the CRC-32 and length of what it compressed. A parser
// goroutine and a compressor goroutine share the work through a few
// chunkSize buffers.
func (p *mergePlan) compressRank(ctx context.Context, idx int, dir string, level int, s *section) error {
	spool, err := os.CreateTemp(dir, ".sglangd-merge-*.part")
	if err != nil {
		return fmt.Errorf("create merge spool in %s: %w", dir, err)
	}
	s.spool = spool // closed by writeGzip
	if err := os.Remove(spool.Name()); err != nil {
		return fmt.Errorf("unlink merge spool %s: %w", spool.Name(), err)
	}
	sw := bufio.NewWriterSize(spool, 256<<10)
	fw, err := flate.NewWriter(sw, level)
	if err != nil {
		return fmt.Errorf("merge: gzip level %d: %w", level, err)
	}
	full := make(chan []byte, spoolBuffers-2)
	free := make(chan []byte, spoolBuffers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for b := range full {
			if gctx.Err() != nil {
				continue // the parser failed: drain
			}
			s.crc = crc32.Update(s.crc, crc32.IEEETable, b)
			s.size += int64(len(b))
			if _, err := fw.Write(b); err != nil {
				return fmt.Errorf("write merge spool for %s: %w", p.files[idx].Path, err)
			}
			free <- b[:0] // never blocks: at most spoolBuffers exist
		}
		return nil
	})
	g.Go(func() error {
		defer close(full)
		allocated := 1
		ew := newEventWriter(func(b []byte) ([]byte, error) {
			select {
			case full <- b:
			case <-gctx.Done():
				return nil, gctx.Err()
			}
			select {
			case nb := <-free:
				return nb, nil
			default:
			}
			if allocated < spoolBuffers {
				allocated++
				return make([]byte, 0, chunkSize), nil
			}
			select {
			case nb := <-free:
				return nb, nil
			case <-gctx.Done():
				return nil, gctx.Err()
			}
		})
		if err := p.copyRank(gctx, idx, ew, &s.out); err != nil {
			return err
		}
		return ew.close()
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if err := fw.Flush(); err != nil {
		return fmt.Errorf("write merge spool for %s: %w", p.files[idx].Path, err)
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("write merge spool for %s: %w", p.files[idx].Path, err)
	}
	return nil
}

// segmentWriter compresses the small pieces the writer adds between
// sections, each with a fresh compressor so that none refers back into a
// section, and keeps the running CRC-32 and length of the whole member.
type segmentWriter struct {
	w    io.Writer
	fw   *flate.Writer
	crc  uint32
	size int64
}

func (s *segmentWriter) add(b []byte, final bool) error {
	s.fw.Reset(s.w)
	if _, err := s.fw.Write(b); err != nil {
		return err
	}
	var err error
	if final {
		err = s.fw.Close()
	} else {
		err = s.fw.Flush()
	}
	s.crc = crc32Combine(s.crc, crc32.ChecksumIEEE(b), int64(len(b)))
	s.size += int64(len(b))
	return err
}

// writeSections writes the gzip member to w, waiting for each section in
// turn. It returns errSectionsStopped when wctx (the workers') ends first.
func (p *mergePlan) writeSections(ctx, wctx context.Context, w io.Writer, secs []*section, level int) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	// The header Go's gzip writer writes: no name, no time, unknown OS.
	hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	switch level {
	case flate.BestCompression:
		hdr[8] = 2
	case flate.BestSpeed:
		hdr[8] = 4
	}
	bw.Write(hdr)
	fw, err := flate.NewWriter(bw, level)
	if err != nil {
		return fmt.Errorf("merge: gzip level %d: %w", level, err)
	}
	seg := &segmentWriter{w: bw, fw: fw}
	if err := seg.add(p.head(), false); err != nil {
		return fmt.Errorf("write merge output: %w", err)
	}
	first := true // no event written yet
	for i, s := range secs {
		select {
		case <-s.done:
		case <-wctx.Done():
			return errSectionsStopped
		}
		if ctx.Err() != nil {
			return errSectionsStopped
		}
		p.record(i, &s.out)
		if s.out.events == 0 {
			continue // an empty section: nothing but a sync flush
		}
		if !first {
			if err := seg.add([]byte(",\n"), false); err != nil {
				return fmt.Errorf("write merge output: %w", err)
			}
		}
		first = false
		if _, err := s.spool.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("read merge spool for %s: %w", p.files[i].Path, err)
		}
		// Straight from file to file (copy_file_range where the output is
		// a file), not through the buffer.
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write merge output: %w", err)
		}
		if _, err := io.Copy(w, s.spool); err != nil {
			return fmt.Errorf("copy merge spool for %s: %w", p.files[i].Path, err)
		}
		_ = s.spool.Close()
		s.spool = nil
		seg.crc = crc32Combine(seg.crc, s.crc, s.size)
		seg.size += s.size
	}
	// Added sort indexes and the closing keys, ending the DEFLATE stream.
	var tail []byte
	for _, s := range secs {
		for _, ev := range s.out.missing {
			if !first {
				tail = append(tail, ",\n"...)
			}
			first = false
			tail = append(tail, ev...)
			p.res.AddedEvents++
		}
	}
	tail = append(tail, p.trailer()...)
	if err := seg.add(tail, true); err != nil {
		return fmt.Errorf("write merge output: %w", err)
	}
	var foot [8]byte
	binary.LittleEndian.PutUint32(foot[:4], seg.crc)
	binary.LittleEndian.PutUint32(foot[4:], uint32(seg.size))
	bw.Write(foot[:])
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write merge output: %w", err)
	}
	return nil
}
