package docker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/authconfig"

	"github.com/sglangd/sglangd/internal/testutil/registrytest"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCredentials_Resolve(t *testing.T) {
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	authsDir := registrytest.DockerConfig(t, "registry.example:5000", "alice", "pw")
	helperDir := writeConfig(t, `{"credHelpers":{"nvcr.io":"sglangd-test-missing"}}`)
	tests := []struct {
		name       string
		creds      Credentials
		host       string
		wantSource string
		wantUser   string
		wantPass   string
		wantErr    error
	}{
		{"ngc key on nvcr.io", Credentials{NGCAPIKey: "nvapi-k"}, "nvcr.io", CredentialsNGC, NGCUser, "nvapi-k", nil},
		{"ngc key not sent elsewhere", Credentials{NGCAPIKey: "nvapi-k"}, "registry.example:5000", CredentialsNone, "", "", nil},
		{"docker config auths", Credentials{UseDockerConfig: true, DockerConfigDir: authsDir}, "registry.example:5000", CredentialsDockerConfig, "alice", "pw", nil},
		{"docker config off", Credentials{DockerConfigDir: authsDir}, "registry.example:5000", CredentialsNone, "", "", nil},
		{"no entry", Credentials{UseDockerConfig: true, DockerConfigDir: authsDir}, "nvcr.io", CredentialsNone, "", "", nil},
		{"no config file", Credentials{UseDockerConfig: true, DockerConfigDir: t.TempDir()}, "nvcr.io", CredentialsNone, "", "", nil},
		{"missing helper", Credentials{UseDockerConfig: true, DockerConfigDir: helperDir}, "nvcr.io", "", "", "", errdefs.ErrFailedPrecondition},
		{"broken config", Credentials{UseDockerConfig: true, DockerConfigDir: writeConfig(t, "{")}, "nvcr.io", "", "", "", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, source, err := tt.creds.resolve(tt.host)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || HintOf(err) == "" {
					t.Fatalf("err %v (hint %q), want %v with a hint", err, HintOf(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if source != tt.wantSource {
				t.Errorf("source %q, want %q", source, tt.wantSource)
			}
			if tt.wantUser == "" {
				if enc != "" {
					t.Errorf("sent credentials %q, want none", enc)
				}
				return
			}
			ac, err := authconfig.Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if ac.Username != tt.wantUser || ac.Password != tt.wantPass || ac.ServerAddress != tt.host {
				t.Errorf("auth %s/%s@%s, want %s/%s@%s", ac.Username, ac.Password, ac.ServerAddress, tt.wantUser, tt.wantPass, tt.host)
			}
		})
	}
}

func TestCredentials_StatusNeedsNoNetwork(t *testing.T) {
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	tests := []struct {
		name        string
		creds       Credentials
		ref         string
		wantSource  string
		wantDetail  string
		wantProblem bool
	}{
		{"ngc", Credentials{NGCAPIKey: "k"}, "nvcr.io/nvidia/sglang:26.01-py3", CredentialsNGC, "$oauthtoken", false},
		{"none", Credentials{}, "nvcr.io/nvidia/sglang:26.01-py3", CredentialsNone, "", false},
		{"auths", Credentials{UseDockerConfig: true, DockerConfigDir: writeConfig(t, `{"auths":{"https://nvcr.io":{"auth":"eDp5"}}}`)},
			"nvcr.io/nvidia/sglang:26.01-py3", CredentialsDockerConfig, "auths entry https://nvcr.io", false},
		{"docker hub key", Credentials{UseDockerConfig: true, DockerConfigDir: writeConfig(t, `{"auths":{"https://index.docker.io/v1/":{"auth":"eDp5"}}}`)},
			"lmsysorg/sglang:latest", CredentialsDockerConfig, "index.docker.io", false},
		{"helper missing", Credentials{UseDockerConfig: true, DockerConfigDir: writeConfig(t, `{"credsStore":"sglangd-test-missing"}`)},
			"nvcr.io/nvidia/sglang:26.01-py3", CredentialsDockerConfig, "docker-credential-sglangd-test-missing", true},
		{"broken file", Credentials{UseDockerConfig: true, DockerConfigDir: writeConfig(t, `{`)},
			"nvcr.io/nvidia/sglang:26.01-py3", CredentialsNone, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tt.creds.Status(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if st.Source != tt.wantSource || !strings.Contains(st.Detail, tt.wantDetail) || (st.Problem != "") != tt.wantProblem {
				t.Errorf("status %+v, want source %s detail ~%q problem %v", st, tt.wantSource, tt.wantDetail, tt.wantProblem)
			}
		})
	}
	if s := (Credentials{NGCAPIKey: "nvapi-secret"}).String(); strings.Contains(s, "nvapi-secret") {
		t.Errorf("String leaks the key: %s", s)
	}
}

func TestClassifyPull(t *testing.T) {
	tests := []struct {
		msg  string
		want PullFailure
	}{
		// Observed on engine 20.10.24 against a registry with basic auth.
		{`Head "http://127.0.0.1:1/v2/x/manifests/t": no basic auth credentials`, PullUnauthenticated},
		{`unauthorized`, PullUnauthenticated},
		// From the notes: a real distribution registry, wrong password.
		{`unauthorized: authentication required`, PullUnauthenticated},
		{`Get "https://registry-1.docker.io/v2/": unauthorized: incorrect username or password`, PullUnauthenticated},
		{`pull access denied for x, repository does not exist or may require 'docker login': denied: requested access to the resource is denied`, PullDenied},
		{`repository 127.0.0.1:5000/x not found: name unknown: Unknown name`, PullNotFound},
		{`manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: Unknown manifest`, PullNotFound},
		{`Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`, PullUnreachable},
		{`Get "https://nvcr.io/v2/": dial tcp: lookup nvcr.io on 10.0.0.2:53: no such host`, PullUnreachable},
		{`Get "https://nvcr.io/v2/": net/http: TLS handshake timeout`, PullUnreachable},
		{`Get "https://nvcr.io/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)`, PullUnreachable},
		{`write /var/lib/docker/tmp/x: no space left on device`, PullOther},
	}
	for _, tt := range tests {
		if got := classifyPull(errors.New(tt.msg)); got != tt.want {
			t.Errorf("classifyPull(%q) = %s, want %s", tt.msg, got, tt.want)
		}
	}
	// Each failure has its own class and a hint.
	for _, f := range []PullFailure{PullUnauthenticated, PullDenied, PullNotFound, PullUnreachable, PullNotPresent} {
		e := &PullError{Ref: "nvcr.io/nvidia/sglang:26.01-py3", Registry: "nvcr.io", Failure: f, Err: fmt.Errorf("x")}
		if e.Hint() == "" || errors.Is(e, errdefs.ErrInternal) {
			t.Errorf("%s: hint %q", f, e.Hint())
		}
	}
}
