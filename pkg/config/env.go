package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar is one environment variable the daemon reads. The table below is
// the single source for overrides and for the documentation in --help.
type EnvVar struct {
	Name string
	// Field is the config path it overrides, or "" for a secret.
	Field       string
	Description string
	Secret      bool
	apply       func(c *Config, v string)
}

// EnvVars lists every variable, in the order they are applied.
var EnvVars = []EnvVar{
	{Name: "SGLANGD_DATA_DIR", Field: "data_dir", Description: "state, sessions and artifacts directory",
		apply: func(c *Config, v string) { c.DataDir = v }},
	{Name: "SGLANGD_SOCKET", Field: "api.socket", Description: "API unix socket path",
		apply: func(c *Config, v string) { c.API.Socket = v }},
	{Name: "SGLANGD_LOG_LEVEL", Field: "log.level", Description: "debug, info, warn or error",
		apply: func(c *Config, v string) { c.Log.Level = v }},
	{Name: "SGLANGD_GPU_MODE", Field: "gpu.mode", Description: "nvml (real GPUs) or none (no GPUs: simulator, CI)",
		apply: func(c *Config, v string) { c.GPU.Mode = v }},
	{Name: "SGLANGD_API_TOKEN", Description: "bearer token for the TCP listener (secret)", Secret: true},
	{Name: "HF_ENDPOINT", Field: "model.endpoint", Description: "Hugging Face endpoint or mirror, e.g. https://hf-mirror.com",
		apply: func(c *Config, v string) { c.Model.Endpoint = strings.TrimRight(v, "/") }},
	{Name: "HF_HUB_CACHE", Field: "model.cache_dir", Description: "Hugging Face hub cache directory",
		apply: func(c *Config, v string) { c.Model.CacheDir = v }},
	{Name: "HF_TOKEN", Description: "Hugging Face token (secret); also HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH, $HF_HOME/token", Secret: true},
	{Name: "NGC_API_KEY", Description: "NGC API key for nvcr.io (secret)", Secret: true},
	{Name: "DOCKER_HOST", Field: "docker.host", Description: "Docker engine endpoint",
		apply: func(c *Config, v string) { c.Docker.Host = v }},
}

func lookup(env []string, name string) (string, bool) {
	prefix := name + "="
	for i := len(env) - 1; i >= 0; i-- {
		if strings.HasPrefix(env[i], prefix) {
			return env[i][len(prefix):], true
		}
	}
	return "", false
}

// ApplyEnv applies the non-secret overrides in env.
func ApplyEnv(c *Config, env []string, _ *Errors) {
	for _, ev := range EnvVars {
		if ev.apply == nil {
			continue
		}
		if v, ok := lookup(env, ev.Name); ok && v != "" {
			ev.apply(c, v)
		}
	}
}

// LoadSecrets fills c.Secrets from env and the secret files the config
// names. A named file that cannot be read is an error for its field; the
// files' contents never appear in errors.
func LoadSecrets(c *Config, env []string, errs *Errors) {
	readSecret := func(field, path string) string {
		if path == "" {
			return ""
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs.Add(field, 0, "cannot read secret file: %v", err)
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	if v, ok := lookup(env, "SGLANGD_API_TOKEN"); ok && v != "" {
		c.Secrets.APIToken = strings.TrimSpace(v)
	} else {
		c.Secrets.APIToken = readSecret("api.tcp.token_file", c.API.TCP.TokenFile)
	}
	c.Secrets.HFToken = hfToken(c, env, readSecret)
	if v, ok := lookup(env, "NGC_API_KEY"); ok && v != "" {
		c.Secrets.NGCAPIKey = strings.TrimSpace(v)
	} else {
		c.Secrets.NGCAPIKey = readSecret("docker.ngc_api_key_file", c.Docker.NGCAPIKeyFile)
	}
}

// hfToken follows huggingface_hub's order: HF_TOKEN, HUGGING_FACE_HUB_TOKEN,
// then a token file (config, HF_TOKEN_PATH, $HF_HOME/token).
func hfToken(c *Config, env []string, readSecret func(field, path string) string) string {
	for _, name := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if v, ok := lookup(env, name); ok {
			if v = strings.TrimSpace(strings.NewReplacer("\r", "", "\n", "").Replace(v)); v != "" {
				return v
			}
		}
	}
	if c.Model.TokenFile != "" {
		return readSecret("model.token_file", c.Model.TokenFile)
	}
	path, _ := lookup(env, "HF_TOKEN_PATH")
	if path == "" {
		home, _ := lookup(env, "HF_HOME")
		if home == "" {
			return ""
		}
		path = filepath.Join(home, "token")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "" // an absent default token file just means anonymous access
	}
	return strings.TrimSpace(string(b))
}

// EnvHelp renders the variable table for --help.
func EnvHelp() string {
	var b strings.Builder
	for _, ev := range EnvVars {
		target := ev.Field
		if target == "" {
			target = "secret"
		}
		fmt.Fprintf(&b, "  %-20s %-16s %s\n", ev.Name, target, ev.Description)
	}
	return b.String()
}
