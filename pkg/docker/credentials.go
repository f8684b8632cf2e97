package docker

import (
	"github.com/sglangd/sglangd/internal/hint"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	cliconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
)

// Where a pull's credentials came from. Only these names are ever logged
// or returned, never the credentials.
const (
	CredentialsNone         = "none"
	CredentialsNGC          = "ngc_api_key"
	CredentialsDockerConfig = "docker_config"
)

// NGCUser is the literal user name nvcr.io expects with an API key.
const NGCUser = "$oauthtoken"

// Credentials say what a pull sends to a registry. The engine ignores the
// client's ~/.docker/config.json, so every pull carries its credentials in
// the X-Registry-Auth header.
//
// Order: the NGC API key for the NGC registries; then, if enabled, the
// Docker client config (auths, credsStore, credHelpers, DOCKER_AUTH_CONFIG)
// read with docker/cli's own loader; else nothing (anonymous).
//
// docker/cli/cli/config is used directly rather than go-containerregistry's
// authn.DefaultKeychain, which wraps the same code: it reads the directory we
// name (a root systemd service would otherwise read root's home), never
// falls back to podman's auth.json or silently to anonymous, and exposes
// the parsed file so the doctor can say what would be used without running
// a credential helper or touching the network. It is already in the module
// graph through go-containerregistry, so it adds no module.
type Credentials struct {
	// NGCAPIKey is sent as the password of user $oauthtoken.
	NGCAPIKey string
	// NGCRegistries are the hosts the key is sent to; default nvcr.io.
	NGCRegistries []string
	// UseDockerConfig enables the Docker client config as a fallback.
	UseDockerConfig bool
	// DockerConfigDir holds config.json; empty means $DOCKER_CONFIG, then
	// ~/.docker of the user sglangd runs as.
	DockerConfigDir string
}

// String names the configured sources and never the key.
func (c Credentials) String() string {
	key := "unset"
	if c.NGCAPIKey != "" {
		key = "set"
	}
	return fmt.Sprintf("ngc_api_key=%s ngc_registries=%v docker_config=%t", key, c.ngcRegistries(), c.UseDockerConfig)
}

func (c Credentials) ngcRegistries() []string {
	if len(c.NGCRegistries) == 0 {
		return []string{"nvcr.io"}
	}
	return c.NGCRegistries
}

// configDir resolves the Docker client config directory on every call
// (docker/cli's own Dir() caches the first answer for the process).
func (c Credentials) configDir() string {
	if c.DockerConfigDir != "" {
		return c.DockerConfigDir
	}
	if d := os.Getenv(cliconfig.EnvOverrideConfigDir); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return cliconfig.Dir()
	}
	return filepath.Join(home, ".docker")
}

// RegistryOf returns the registry host of an image reference, "docker.io"
// for Docker Hub's short names.
func RegistryOf(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %v", ref, errdefs.ErrInvalidArgument, err)
	}
	return reference.Domain(named), nil
}

// resolve returns the X-Registry-Auth value for host and where it came
// from. Errors name the config file or helper, never a secret.
func (c Credentials) resolve(host string) (encoded, source string, err error) {
	if c.NGCAPIKey != "" && slices.Contains(c.ngcRegistries(), host) {
		enc, err := authconfig.Encode(registry.AuthConfig{Username: NGCUser, Password: c.NGCAPIKey, ServerAddress: host})
		if err != nil {
			return "", "", fmt.Errorf("encode credentials for %s: %w", host, err)
		}
		return enc, CredentialsNGC, nil
	}
	if !c.UseDockerConfig {
		return "", CredentialsNone, nil
	}
	cf, err := cliconfig.Load(c.configDir())
	if err != nil {
		return "", "", hint.With(fmt.Errorf("docker client config %s: %w: %v", filepath.Join(c.configDir(), cliconfig.ConfigFileName), errdefs.ErrInvalidArgument, err),
			"fix or remove the file, or set docker.use_docker_config: false")
	}
	ac, err := cf.GetAuthConfig(host)
	if err != nil {
		return "", "", hint.With(fmt.Errorf("credentials for %s from the docker client config: %w: %v", host, errdefs.ErrFailedPrecondition, err),
			"install the credential helper named in config.json (credsStore/credHelpers) on sglangd's PATH, or log in again")
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" && ac.Auth == "" {
		return "", CredentialsNone, nil
	}
	enc, err := authconfig.Encode(registry.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth, ServerAddress: host,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})
	if err != nil {
		return "", "", fmt.Errorf("encode credentials for %s: %w", host, err)
	}
	return enc, CredentialsDockerConfig, nil
}

// CredentialStatus says, without network access and without running a
// credential helper, what a pull from Registry would send.
type CredentialStatus struct {
	Registry string `json:"registry"`
	// Source is CredentialsNGC, CredentialsDockerConfig or CredentialsNone.
	Source string `json:"source"`
	// Detail names the mechanism: "auths entry", "credential helper
	// docker-credential-pass", "DOCKER_AUTH_CONFIG".
	Detail string `json:"detail,omitempty"`
	// ConfigFile is the Docker client config consulted, if any.
	ConfigFile string `json:"config_file,omitempty"`
	// Problem is set when the configured source cannot work (a helper not
	// on PATH, an unreadable config file).
	Problem string `json:"problem,omitempty"`
}

// Status reports which credentials a pull of ref would use.
func (c Credentials) Status(ref string) (CredentialStatus, error) {
	host, err := RegistryOf(ref)
	if err != nil {
		return CredentialStatus{}, err
	}
	st := CredentialStatus{Registry: host, Source: CredentialsNone}
	if c.NGCAPIKey != "" && slices.Contains(c.ngcRegistries(), host) {
		st.Source, st.Detail = CredentialsNGC, "NGC API key as user "+NGCUser
		return st, nil
	}
	if !c.UseDockerConfig {
		return st, nil
	}
	st.ConfigFile = filepath.Join(c.configDir(), cliconfig.ConfigFileName)
	if v := os.Getenv(configfile.DockerEnvConfigKey); v != "" {
		st.Source, st.Detail = CredentialsDockerConfig, configfile.DockerEnvConfigKey+" (entries not checked)"
		return st, nil
	}
	cf, err := cliconfig.Load(c.configDir())
	if err != nil {
		st.Problem = err.Error()
		return st, nil
	}
	key := host
	if host == "docker.io" {
		key = "https://index.docker.io/v1/"
	}
	if helper := helperFor(cf, key); helper != "" {
		st.Source, st.Detail = CredentialsDockerConfig, "credential helper docker-credential-"+helper
		if _, err := exec.LookPath("docker-credential-" + helper); err != nil {
			st.Problem = fmt.Sprintf("docker-credential-%s is not on sglangd's PATH", helper)
		}
		return st, nil
	}
	for k, ac := range cf.AuthConfigs {
		if (k == key || credentials.ConvertToHostname(k) == key) &&
			(ac.Auth != "" || ac.Username != "" || ac.IdentityToken != "" || ac.RegistryToken != "") {
			st.Source, st.Detail = CredentialsDockerConfig, "auths entry "+k
			return st, nil
		}
	}
	return st, nil
}

func helperFor(cf *configfile.ConfigFile, key string) string {
	if h, ok := cf.CredentialHelpers[key]; ok {
		return h
	}
	return cf.CredentialsStore
}
