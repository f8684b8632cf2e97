package model

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sglangd/sglangd/internal/hubtest"
)

// BenchmarkCache_Pull pulls a generated 512 MiB repo (4 LFS files) from
// the loopback Hub into a fresh cache per iteration; bytes/s is the pull's
// throughput with hashing, without fsync. The server runs in the same
// process, so this measures CPU cost more than real-world speed: see
// bench/model-pull.sh for the end-to-end comparison with curl.
func BenchmarkCache_Pull(b *testing.B) {
	const fileSize = 128 << 20
	srv, err := hubtest.New(hubtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var files []hubtest.File
	for i := 0; i < 4; i++ {
		files = append(files, hubtest.File{Path: "w/" + string(rune('a'+i)) + ".safetensors", Size: fileSize, Seed: uint64(i), LFS: true})
	}
	if _, err := srv.AddRepo(hubtest.Repo{ID: "bench/repo", Files: files}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * fileSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c, err := New(Options{CacheDir: filepath.Join(dir, "hub"), Endpoint: srv.URL, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Pull(context.Background(), PullRequest{Repo: "bench/repo"}, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
