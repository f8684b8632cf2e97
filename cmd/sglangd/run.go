package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/internal/buildinfo"
	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/docker"
	"github.com/sglangd/sglangd/pkg/gpu"
	"github.com/sglangd/sglangd/pkg/model"
	"github.com/sglangd/sglangd/pkg/operation"
	"github.com/sglangd/sglangd/pkg/store"
)

// daemon holds what the running process wires together.
type daemon struct {
	cfgPath string
	flags   flags
	log     *zap.Logger
	level   zap.AtomicLevel
	build   api.BuildInfo

	// gpus is set before the API serves and never changes; NVML opens
	// on first use, so a host without a driver still starts.
	gpus *gpu.Manager

	mu  sync.RWMutex
	cfg config.Config
	st  *store.Store
	// docker is set once the daemon id is known (after the store opens).
	docker    *docker.Manager
	models    *model.Cache
	id        string
	starts    int64
	startedAt time.Time
}

func runDaemon(ctx context.Context, cfg config.Config, cfgPath string, f flags, stderr io.Writer) error {
	logger, level, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	defer func() { _ = logger.Sync() }()
	d := &daemon{cfg: cfg, cfgPath: cfgPath, flags: f, log: logger, level: level, build: buildinfo.Get(), startedAt: time.Now()}
	return d.run(ctx)
}

func (d *daemon) run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg := d.cfg
	d.log.Info("starting sglangd", zap.String("version", d.build.Version), zap.String("config", d.cfgPath),
		zap.String("data_dir", cfg.DataDir), zap.String("socket", cfg.API.Socket), zap.Stringer("secrets", cfg.Secrets))

	reg := prometheus.NewRegistry()
	gpus, err := gpu.New(gpuOptions(cfg.GPU, d.log, reg))
	if err != nil {
		return fmt.Errorf("gpu: %w", err)
	}
	d.gpus = gpus
	defer func() {
		if err := gpus.Close(); err != nil {
			d.log.Warn("close NVML", zap.Error(err))
		}
	}()
	// Operations (pulls, sessions) live under the daemon's context and end
	// with it, never with the request that started them.
	ops := operation.NewManager(ctx, d.log)
	defer ops.Close()
	cache, err := model.New(modelOptions(cfg, d.log, reg, d.build))
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	d.mu.Lock()
	d.models = cache
	d.mu.Unlock()
	srv, err := server.New(server.Options{
		Operations: ops,
		Logger:     d.log,
		Registry:   reg,
		Build:      d.build,
		Version:    d.version,
		Checks:     d.checks(),
		Token:      cfg.Secrets.APIToken,
		GPUs:       gpuBackend{m: gpus},
		Images:     imageBackend{d: d},
		Models:     modelBackend{cache: cache, ops: ops},
	})
	if err != nil {
		return err
	}

	// Listen before the slow part of start-up, so clients see "starting"
	// instead of "connection refused".
	mode, _ := strconv.ParseUint(cfg.API.SocketMode, 8, 32)
	uln, err := server.ListenUnix(cfg.API.Socket, os.FileMode(mode), cfg.API.SocketGroup)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.API.Socket)
	listeners := []struct {
		ln  net.Listener
		tcp bool
	}{{uln, false}}
	if cfg.API.TCP.Listen != "" {
		tln, err := server.ListenTCP(ctx, cfg.API.TCP.Listen, cfg.API.TCP.TLSCert, cfg.API.TCP.TLSKey)
		if err != nil {
			uln.Close()
			return err
		}
		listeners = append(listeners, struct {
			ln  net.Listener
			tcp bool
		}{tln, true})
	}
	serveErr := make(chan error, len(listeners))
	for _, l := range listeners {
		d.log.Info("serving API", zap.String("addr", l.ln.Addr().String()), zap.Bool("tcp", l.tcp))
		go func() { serveErr <- srv.Serve(ctx, l.ln, l.tcp) }()
	}

	if err := d.open(ctx); err != nil {
		shutdown(srv, time.Second)
		return err
	}
	defer d.close()
	if err := d.startDocker(ctx, reg); err != nil {
		shutdown(srv, time.Second)
		return err
	}
	srv.SetReady(true)
	d.log.Info("sglangd ready", zap.String("daemon_id", d.id), zap.Int64("starts", d.starts),
		zap.Duration("startup", time.Since(d.startedAt)))
	notify(d.log, "READY=1\nSTATUS=serving on "+cfg.API.Socket)
	stopWatchdog := d.watchdog(ctx)
	defer stopWatchdog()
	d.reportGPUs(ctx)

	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping sglangd", zap.Duration("deadline", cfg.API.ShutdownTimeout.D()))
			notify(d.log, "STOPPING=1")
			srv.SetReady(false)
			// Cancel running operations before the store closes: downloads
			// resume on the next start, sessions record the interruption.
			ops.Close()
			if err := shutdown(srv, cfg.API.ShutdownTimeout.D()); err != nil {
				d.log.Warn("graceful stop ran past its deadline; closed remaining connections", zap.Error(err))
				return fmt.Errorf("graceful stop ran past api.shutdown_timeout (%s): %w", cfg.API.ShutdownTimeout.D(), err)
			}
			d.log.Info("sglangd stopped")
			return nil
		case <-hup:
			d.reload()
		case err := <-serveErr:
			if err != nil {
				return fmt.Errorf("API server: %w", err)
			}
		}
	}
}

// open does the slow, fallible part of start-up: the data directory and
// the state database.
func (d *daemon) open(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(d.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir %s: %w", d.cfg.DataDir, err)
	}
	st, err := store.Open(ctx, filepath.Join(d.cfg.DataDir, store.FileName), d.log)
	if err != nil {
		return err
	}
	id, err := st.DaemonID(ctx)
	if err != nil {
		st.Close()
		return err
	}
	n, err := st.Start(ctx, d.build.Version, d.startedAt)
	if err != nil {
		st.Close()
		return err
	}
	d.st, d.id, d.starts = st, id, n
	return nil
}

func (d *daemon) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.docker != nil {
		// Server containers keep running: the next start reconciles them.
		if err := d.docker.Close(); err != nil {
			d.log.Warn("close Docker client", zap.Error(err))
		}
		d.docker = nil
	}
	if d.st != nil {
		if err := d.st.Close(); err != nil {
			d.log.Warn("close state database", zap.Error(err))
		}
		d.st = nil
	}
}

func (d *daemon) version(context.Context) (*api.VersionResponse, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.st == nil {
		return nil, fmt.Errorf("sglangd is starting: %w", errdefs.ErrUnavailable)
	}
	return &api.VersionResponse{DaemonID: d.id, StartedAt: d.startedAt, Starts: d.starts, DataDir: d.cfg.DataDir}, nil
}

// reload re-reads the config file on SIGHUP and applies what can change
// live; anything else is reported as needing a restart.
func (d *daemon) reload() {
	notify(d.log, "RELOADING=1")
	defer notify(d.log, "READY=1")
	next, _, err := loadConfig(d.flags)
	if err != nil {
		d.log.Error("reload: config rejected, keeping the running one", zap.Error(err))
		return
	}
	d.mu.Lock()
	prev := d.cfg
	d.cfg.Log.Level = next.Log.Level
	d.mu.Unlock()
	if lvl, err := zap.ParseAtomicLevel(next.Log.Level); err == nil {
		d.level.SetLevel(lvl.Level())
	}
	next.Log.Level = prev.Log.Level
	next.Secrets, prev.Secrets = config.Secrets{}, config.Secrets{}
	restart := !configEqualExceptLive(prev, next)
	d.log.Info("reloaded configuration", zap.String("log_level", d.level.String()), zap.Bool("other_changes_need_restart", restart))
}

func configEqualExceptLive(a, b config.Config) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// watchdog pets systemd's watchdog at half its interval while the daemon
// runs; it does nothing outside systemd.
func (d *daemon) watchdog(ctx context.Context) func() {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				notify(d.log, "WATCHDOG=1")
			}
		}
	}()
	return cancel
}

func notify(log *zap.Logger, state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", zap.Error(err))
	}
}

func shutdown(srv *server.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return context.DeadlineExceeded
	}
	return err
}
