package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/docker"
)

// dockerOptions maps the docker config section (and the NGC key) to the
// Docker manager's options. instance is the daemon's id, so reconcile
// only touches this data directory's containers.
func dockerOptions(c config.Config, instance string, log *zap.Logger, reg prometheus.Registerer) docker.Options {
	d := c.Docker
	return docker.Options{
		Host:     d.Host,
		Instance: instance,
		Credentials: docker.Credentials{
			NGCAPIKey:       c.Secrets.NGCAPIKey,
			UseDockerConfig: d.UseDockerConfig,
		},
		GPUDriver:    docker.GPUDriver(d.GPUDriver),
		IPCHost:      d.IPCHost,
		ShmSize:      int64(d.ShmSize),
		Ulimits:      d.Ulimits,
		Network:      docker.Network(d.Network),
		StopGrace:    d.StopGrace.D(),
		ReadyTimeout: d.ReadyTimeout.D(),
		KeepWarm:     d.KeepWarm,
		Logger:       log,
		Registerer:   reg,
	}
}

// startDocker connects the Docker manager and reconciles the containers a
// previous run left behind: a server whose session is still active is
// adopted, anything else stopped and removed. An unreachable engine does
// not stop the daemon (the doctor reports it); reconcile then waits for
// the next start.
func (d *daemon) startDocker(ctx context.Context, reg prometheus.Registerer) error {
	d.mu.RLock()
	opts := dockerOptions(d.cfg, d.id, d.log, reg)
	d.mu.RUnlock()
	m, err := docker.New(opts)
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	d.mu.Lock()
	d.docker = m
	d.mu.Unlock()
	info, err := m.Info(ctx)
	if err != nil {
		d.log.Warn("Docker engine unavailable: image pulls and sessions will fail until it is back; leftover containers are reconciled on the next start",
			zap.Error(err), zap.String("hint", docker.HintOf(err)))
		return nil
	}
	d.log.Info("Docker engine", zap.String("host", info.Host), zap.String("version", info.Version),
		zap.String("api_version", info.APIVersion), zap.Strings("runtimes", info.Runtimes))
	res, err := m.Reconcile(ctx, docker.SessionCheckFunc(d.sessionActive))
	if err != nil {
		d.log.Warn("reconcile leftover containers", zap.Error(err))
		return nil
	}
	if len(res) > 0 {
		d.log.Info("reconciled leftover server containers", zap.Int("count", len(res)))
	}
	return nil
}

// sessionActive tells reconcile whether a container's session still runs.
// No session survives a restart yet, so every leftover is removed; the
// session runner will answer from its store.
func (d *daemon) sessionActive(string) bool { return false }

func (d *daemon) dockerManager() (*docker.Manager, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.docker == nil {
		return nil, fmt.Errorf("sglangd is starting (Docker not connected yet): %w", errdefs.ErrUnavailable)
	}
	return d.docker, nil
}

// imageBackend adapts the Docker manager to the API server's
// ImageBackend.
type imageBackend struct{ d *daemon }

func (b imageBackend) ResolveImage(ref string) (string, error) {
	if strings.TrimSpace(ref) == "" {
		b.d.mu.RLock()
		ref = b.d.cfg.Docker.Image
		b.d.mu.RUnlock()
	}
	return docker.NormalizeRef(ref)
}

func (b imageBackend) PullImage(ctx context.Context, ref, policy string, report func(api.ImagePullEvent)) (*api.Image, error) {
	m, err := b.d.dockerManager()
	if err != nil {
		return nil, err
	}
	p, err := docker.ParsePullPolicy(policy)
	if err != nil {
		return nil, err
	}
	img, err := m.Pull(ctx, ref, p, func(ev docker.PullEvent) { report(api.ImagePullEvent(ev)) })
	if err != nil {
		return nil, err
	}
	return apiImage(img), nil
}

func (b imageBackend) Images(ctx context.Context) (*api.ImageList, error) {
	m, err := b.d.dockerManager()
	if err != nil {
		return nil, err
	}
	b.d.mu.RLock()
	configured := b.d.cfg.Docker.Image
	b.d.mu.RUnlock()
	full, err := docker.NormalizeRef(configured)
	if err != nil {
		return nil, err
	}
	imgs, err := m.List(ctx, full)
	if err != nil {
		return nil, err
	}
	out := &api.ImageList{Configured: full, Images: make([]api.Image, 0, len(imgs))}
	for i := range imgs {
		out.Present = out.Present || imgs[i].Ref == full
		out.Images = append(out.Images, *apiImage(&imgs[i]))
	}
	return out, nil
}

func apiImage(i *docker.Image) *api.Image {
	return &api.Image{Ref: i.Ref, ID: i.ID, Digest: i.Digest, RepoDigest: i.RepoDigest, Created: i.Created, Size: i.Size,
		OS: i.OS, Arch: i.Arch, CUDAVersion: i.CUDAVersion, SGLangVersion: i.SGLangVersion, Labels: i.Labels, Env: i.Env,
		Pulled: i.Pulled, CredentialSource: i.CredentialSource}
}

// checkDocker is the doctor's Docker check: the engine answers, which API
// version was negotiated, and whether GPU containers can start (the
// NVIDIA runtime or CDI registered).
func (d *daemon) checkDocker(ctx context.Context) api.Check {
	m, err := d.dockerManager()
	if err != nil {
		return api.Check{Status: api.CheckSkip, Message: err.Error()}
	}
	d.mu.RLock()
	cfg := d.cfg
	d.mu.RUnlock()
	info, err := m.Info(ctx)
	if err != nil {
		return api.Check{Status: api.CheckFail, Message: err.Error(), Hint: docker.HintOf(err)}
	}
	details := map[string]string{"host": info.Host, "version": info.Version, "api_version": info.APIVersion,
		"engine_api_version": info.EngineAPIVersion, "runtimes": strings.Join(info.Runtimes, ","),
		"default_runtime": info.DefaultRuntime, "storage_driver": info.StorageDriver, "rootless": fmt.Sprint(info.Rootless)}
	msg := fmt.Sprintf("engine %s at %s, API %s (engine max %s)", info.Version, info.Host, info.APIVersion, info.EngineAPIVersion)
	res := api.Check{Status: api.CheckOK, Message: msg, Details: details}
	var warns, hints []string
	switch {
	case cfg.GPU.Mode == "none":
		res.Message += "; gpu.mode none: containers get no GPUs"
	case cfg.Docker.GPUDriver == string(docker.GPUDriverCDI) && len(info.CDISpecDirs) > 0:
		res.Message += "; CDI enabled (" + strings.Join(info.CDISpecDirs, ", ") + ")"
	case cfg.Docker.GPUDriver == string(docker.GPUDriverCDI):
		warns = append(warns, "docker.gpu_driver is cdi but the engine reports no CDI spec directories")
		hints = append(hints, "enable CDI (engine 28.2+, or features.cdi on 25+) and run `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`")
	case info.NVIDIARuntime():
		res.Message += "; nvidia runtime registered"
	default:
		warns = append(warns, `no nvidia runtime registered: GPU containers fail with "could not select device driver" unless nvidia-container-runtime-hook is on dockerd's PATH`)
		hints = append(hints, "install the NVIDIA Container Toolkit, then `nvidia-ctk runtime configure --runtime=docker && systemctl restart docker`")
	}
	if v, ok := cfg.Docker.Ulimits["memlock"]; ok && info.Rootless {
		warns = append(warns, fmt.Sprintf("rootless engine: ulimit memlock=%d will be refused at start", v))
		hints = append(hints, "remove docker.ulimits.memlock")
	}
	if len(warns) > 0 {
		res.Status = api.CheckWarn
		res.Message += "; " + strings.Join(warns, "; ")
		res.Hint = strings.Join(hints, "; ")
	}
	return res
}

// checkRegistryCredentials says which credentials a pull of docker.image
// would send, without network access or running a credential helper.
func (d *daemon) checkRegistryCredentials(context.Context) api.Check {
	d.mu.RLock()
	cfg := d.cfg
	d.mu.RUnlock()
	creds := docker.Credentials{NGCAPIKey: cfg.Secrets.NGCAPIKey, UseDockerConfig: cfg.Docker.UseDockerConfig}
	st, err := creds.Status(cfg.Docker.Image)
	if err != nil {
		return api.Check{Status: api.CheckFail, Message: err.Error(), Hint: "fix docker.image"}
	}
	details := map[string]string{"registry": st.Registry, "source": st.Source, "image": cfg.Docker.Image,
		"pull_policy": cfg.Docker.PullPolicy}
	if st.ConfigFile != "" {
		details["docker_config"] = st.ConfigFile
	}
	switch {
	case st.Problem != "":
		return api.Check{Status: api.CheckFail, Details: details,
			Message: fmt.Sprintf("%s: %s (%s)", st.Registry, st.Problem, st.Detail),
			Hint:    "fix the Docker client config of the user sglangd runs as, or set NGC_API_KEY / docker.ngc_api_key_file"}
	case st.Source != docker.CredentialsNone:
		return api.Check{Status: api.CheckOK, Details: details,
			Message: fmt.Sprintf("%s: %s", st.Registry, st.Detail)}
	case st.Registry == "nvcr.io":
		return api.Check{Status: api.CheckWarn, Details: details,
			Message: "nvcr.io: no NGC API key and no Docker login; pulls are anonymous and fail for images that need a key",
			Hint:    "set NGC_API_KEY or docker.ngc_api_key_file (user $oauthtoken), or `docker login nvcr.io` as the sglangd user"}
	}
	return api.Check{Status: api.CheckOK, Details: details,
		Message: fmt.Sprintf("%s: no credentials configured; pulls are anonymous", st.Registry)}
}
