// Command modelpull benchmarks `sglangctl model pull` against curl on the
// same bytes: it serves a generated multi-GB repo from the loopback Hub
// (internal/hubtest, content generated on the fly, so the server holds no
// file in memory), downloads it with curl (one connection per file, all
// files in parallel) and with a real sglangd, and prints a table with
// throughput, the ratio to curl and the daemon's peak RSS.
//
// Run it through bench/model-pull.sh, which builds the binaries.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sglangd/sglangd/internal/hubtest"
	"github.com/sglangd/sglangd/pkg/api"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "modelpull:", err)
		os.Exit(1)
	}
}

type result struct {
	name    string
	bytes   int64
	elapsed time.Duration
	cpu     time.Duration // user+system CPU of the client process
	rss     int64         // peak RSS in bytes, 0 if not measured
	note    string
}

func run() error {
	bin := flag.String("bin", "", "directory with sglangd and sglangctl")
	dir := flag.String("dir", "", "work directory (default a temp dir; put it on the disk to measure)")
	totalGiB := flag.Float64("size", 3, "repo size in GiB, split over -files files")
	nfiles := flag.Int("files", 4, "number of weight files")
	runs := flag.Int("runs", 2, "alternating runs of each method")
	partSize := flag.String("part-size", "128MiB", "model.part_size for the daemon")
	conns := flag.Int("connections-per-file", 8, "model.connections_per_file")
	flag.Parse()
	if *bin == "" {
		return errors.New("-bin is required")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return fmt.Errorf("curl is needed for the baseline: %w", err)
	}
	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "modelpull-")
		if err != nil {
			return err
		}
		work = d
	}
	defer os.RemoveAll(work)

	srv, err := hubtest.New(hubtest.Options{})
	if err != nil {
		return err
	}
	defer srv.Close()
	const repo = "bench/synthetic-llm"
	total := int64(*totalGiB * (1 << 30))
	files := []hubtest.File{{Path: "config.json", Data: []byte(`{"architectures":["LlamaForCausalLM"]}`)},
		{Path: "tokenizer.json", Size: 7 << 20, Seed: 99}}
	for i := 0; i < *nfiles; i++ {
		// Equal shards; the last one takes the remainder.
		size := total / int64(*nfiles)
		if i == *nfiles-1 {
			size = total - size*int64(*nfiles-1)
		}
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, *nfiles)
		files = append(files, hubtest.File{Path: name, Size: size, Seed: uint64(i + 1), LFS: true})
	}
	fmt.Fprintf(os.Stderr, "hashing the %.1f GiB synthetic repo...\n", *totalGiB)
	if _, err := srv.AddRepo(hubtest.Repo{ID: repo, Files: files}); err != nil {
		return err
	}
	var allBytes int64
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		if f.Data != nil {
			allBytes += int64(len(f.Data))
		} else {
			allBytes += f.Size
		}
	}

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("repo %.2f GiB in %d files; %d CPUs, load average %s; part size %s, %d connections per file; best of %d runs\n\n",
		float64(allBytes)/(1<<30), len(files), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "), *partSize, *conns, *runs)
	var results []result
	for r := 0; r < *runs; r++ {
		res, err := runCurl(srv.URL, repo, paths, filepath.Join(work, "curl"), allBytes)
		if err != nil {
			return err
		}
		results = append(results, res...)
		for _, fsync := range []bool{true, false} {
			res2, err := runPull(*bin, srv.URL, repo, filepath.Join(work, "sglangd"), *partSize, *conns, fsync, allBytes)
			if err != nil {
				return err
			}
			results = append(results, res2)
		}
	}
	printTable(results, allBytes)
	return nil
}

// runCurl fetches every file with one curl process (-Z: all in parallel,
// one connection each), following the Hub's redirect to the CDN.
func runCurl(hubURL, repo string, paths []string, out string, total int64) ([]result, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	args := []string{"-sS", "--no-progress-meter", "-f", "-L", "-Z", "--parallel-max", strconv.Itoa(len(paths))}
	for i, p := range paths {
		args = append(args, "-o", filepath.Join(out, strconv.Itoa(i)), hubURL+"/"+repo+"/resolve/main/"+p)
	}
	syncDisk()
	start := time.Now()
	cmd := exec.Command("curl", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("curl: %w", err)
	}
	elapsed := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	rss := int64(ru.Maxrss) << 10
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	syncStart := time.Now()
	syncDisk()
	withSync := elapsed + time.Since(syncStart)
	// What verifying the same bytes costs with standard tools: one
	// sha256sum per file, all at once (the pull hashes while it downloads).
	hashStart := time.Now()
	var hashers []*exec.Cmd
	for i := range paths {
		h := exec.Command("sha256sum", filepath.Join(out, strconv.Itoa(i)))
		if err := h.Start(); err != nil {
			return nil, fmt.Errorf("sha256sum: %w", err)
		}
		hashers = append(hashers, h)
	}
	for _, h := range hashers {
		if err := h.Wait(); err != nil {
			return nil, fmt.Errorf("sha256sum: %w", err)
		}
	}
	withHash := elapsed + time.Since(hashStart)
	var got int64
	for i := range paths {
		fi, err := os.Stat(filepath.Join(out, strconv.Itoa(i)))
		if err != nil {
			return nil, err
		}
		got += fi.Size()
	}
	if got != total {
		return nil, fmt.Errorf("curl fetched %d bytes, want %d", got, total)
	}
	return []result{{name: curlCache, bytes: got, elapsed: elapsed, cpu: cpu, rss: rss, note: "no hash, no fsync"},
		{name: curlSync, bytes: got, elapsed: withSync, note: "curl, then sync(2)"},
		{name: curlHash, bytes: got, elapsed: withHash, note: "curl, then sha256sum of each file in parallel"}}, nil
}

// runPull starts a fresh sglangd, pulls the repo with sglangctl and reads
// the daemon's peak RSS before stopping it.
func runPull(bin, hubURL, repo, work, partSize string, conns int, fsync bool, total int64) (result, error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return result{}, err
	}
	defer os.RemoveAll(work)
	socket := filepath.Join(work, "sglangd.sock")
	cfg := filepath.Join(work, "sglangd.yaml")
	yaml := fmt.Sprintf(`version: 1
data_dir: %s
log: {level: warn}
api: {socket: %s, socket_mode: "0600"}
gpu: {mode: none}
model:
  endpoint: %s
  part_size: %s
  connections_per_file: %d
  concurrent_files: 4
  max_connections: 16
  fsync: %v
`, filepath.Join(work, "data"), socket, hubURL, partSize, conns, fsync)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return result{}, err
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
	daemon := exec.Command(filepath.Join(bin, "sglangd"), "--config", cfg)
	daemon.Env = env
	daemon.Stderr = os.Stderr
	if err := daemon.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	client, err := api.NewClient("unix://" + socket)
	if err != nil {
		return result{}, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := client.Ready(ctx)
		cancel()
		if err == nil && h.Status == "ready" {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("sglangd not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	baseRSS := vmHWM(daemon.Process.Pid)
	syncDisk()
	cpu0 := cpuTime(daemon.Process.Pid)
	start := time.Now()
	ctl := exec.Command(filepath.Join(bin, "sglangctl"), "--host", "unix://"+socket, "model", "pull", repo, "--plain", "-o", "json")
	ctl.Env = env
	ctl.Stdout = nil
	ctl.Stderr = os.Stderr
	if err := ctl.Run(); err != nil {
		return result{}, fmt.Errorf("sglangctl model pull: %w", err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime(daemon.Process.Pid) - cpu0
	peak := vmHWM(daemon.Process.Pid)
	var got int64
	_ = filepath.Walk(filepath.Join(work, "data", "hf", "hub"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.Contains(p, "/blobs/") {
			got += fi.Size()
		}
		return nil
	})
	if got != total {
		return result{}, fmt.Errorf("pull stored %d bytes, want %d", got, total)
	}
	name, note := pullFsync, "sha256-verified, fsynced"
	if !fsync {
		name, note = pullNoFsync, "sha256-verified, page cache"
	}
	return result{name: name, bytes: got, elapsed: elapsed, cpu: cpu, rss: peak,
		note: fmt.Sprintf("%s; daemon RSS %s before", note, mib(baseRSS))}, nil
}

// vmHWM reads a process's peak resident set size.
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime reads a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// syncDisk flushes dirty pages so one method's writeback does not slow
// the next.
func syncDisk() { syscall.Sync() }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

const (
	curlCache   = "curl -Z (page cache)"
	curlSync    = "curl -Z + sync"
	curlHash    = "curl -Z + sha256sum"
	pullFsync   = "model pull (fsync: true)"
	pullNoFsync = "model pull (fsync: false)"
)

func printTable(results []result, total int64) {
	best := map[string]time.Duration{}
	for _, r := range results {
		if b, ok := best[r.name]; !ok || r.elapsed < b {
			best[r.name] = r.elapsed
		}
	}
	curl, curlDurable := best[curlCache], best[curlSync]
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "METHOD\tGiB\tSECONDS\tMiB/s\tvs curl\tvs curl+sync\tCPU s\tPEAK RSS\tNOTE\n")
	for _, r := range results {
		rss := "-"
		if r.rss > 0 {
			rss = mib(r.rss)
		}
		rate := float64(r.bytes) / (1 << 20) / r.elapsed.Seconds()
		cpu := "-"
		if r.cpu > 0 {
			cpu = fmt.Sprintf("%.2f", r.cpu.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%s\t%s\t%s\n", r.name, float64(r.bytes)/(1<<30), r.elapsed.Seconds(), rate,
			curl.Seconds()/r.elapsed.Seconds(), curlDurable.Seconds()/r.elapsed.Seconds(), cpu, rss, r.note)
	}
	tw.Flush()
	fmt.Printf("\nbest of each (throughput ratios, target >= 0.9):\n")
	fmt.Printf("  durable:    pull (fsync: true) %.2fs vs curl+sync %.2fs: %.2f\n", best[pullFsync].Seconds(), curlDurable.Seconds(),
		curlDurable.Seconds()/best[pullFsync].Seconds())
	fmt.Printf("  page cache: pull (fsync: false) %.2fs vs curl %.2fs: %.2f\n", best[pullNoFsync].Seconds(), curl.Seconds(),
		curl.Seconds()/best[pullNoFsync].Seconds())
	fmt.Printf("  verified:   pull (fsync: false) %.2fs vs curl+sha256sum %.2fs: %.2f\n", best[pullNoFsync].Seconds(), best[curlHash].Seconds(),
		best[curlHash].Seconds()/best[pullNoFsync].Seconds())
	fmt.Printf("  default pull (fsync: true) vs curl (page cache): %.2f\n", curl.Seconds()/best[pullFsync].Seconds())
	_ = total
}
