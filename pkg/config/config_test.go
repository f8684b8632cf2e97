package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"go.yaml.in/yaml/v3"
)

func examplePath(t *testing.T) string {
	t.Helper()
	return filepath.Join("..", "..", "configs", "sglangd.yaml")
}

// The shipped example documents the defaults: loading it must give exactly
// Default(), so the comments can never drift from the code.
func TestExampleEqualsDefaults(t *testing.T) {
	got, err := Load(examplePath(t), nil)
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("example differs from Default():\n got %+v\nwant %+v", got, want)
	}
}

// Every key of the schema appears in the example, so every key is documented.
func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(path string, n *yaml.Node, typ reflect.Type)
	walk = func(path string, n *yaml.Node, typ reflect.Type) {
		if typ.Kind() != reflect.Struct || reflect.PointerTo(typ).Implements(unmarshalerType) {
			return
		}
		for key, idx := range yamlFields(typ) {
			var val *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					val = n.Content[i+1]
				}
			}
			if val == nil {
				missing = append(missing, join(path, key))
				continue
			}
			walk(join(path, key), val, typ.Field(idx).Type)
		}
	}
	walk("", doc.Content[0], reflect.TypeFor[Config]())
	if len(missing) > 0 {
		t.Errorf("configs/sglangd.yaml lacks keys: %s", strings.Join(missing, ", "))
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"tp_size zero", "sessions:\n  defaults:\n    tp_size: 0\n", []string{"sessions.defaults.tp_size: must be 1..8, got 0"}},
		{"tp_size text", "sessions:\n  defaults:\n    tp_size: four\n", []string{`sessions.defaults.tp_size: expected a whole number, got "four" (line 3)`}},
		{"unknown top key", "datadir: /x\n", []string{"datadir: unknown key; expected one of: api, data_dir,"}},
		{"unknown nested key", "api:\n  tcp:\n    lisen: 1.2.3.4:5\n", []string{"api.tcp.lisen: unknown key; expected one of: listen, tls_cert, tls_key, token_file (line 3)"}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", []string{"log.level: key given twice"}},
		{"bad level", "log:\n  level: loud\n", []string{`log.level: must be one of debug, info, warn, error, got "loud"`}},
		{"relative data dir", "data_dir: var/lib\n", []string{`data_dir: must be an absolute path, got "var/lib"`}},
		{"bad duration", "api:\n  shutdown_timeout: 30\n", []string{`api.shutdown_timeout: expected a duration such as "30s" or "5m", got "30"`}},
		{"bad size", "model:\n  part_size: lots\n", []string{`model.part_size: expected a size such as "128MiB" or "32GiB", got "lots"`}},
		{"small part", "model:\n  part_size: 1KiB\n", []string{"model.part_size: must be at least 1MiB, got 1KiB"}},
		{"tcp without token", "api:\n  tcp:\n    listen: 127.0.0.1:7443\n", []string{"api.tcp.token_file: required when api.tcp.listen is set"}},
		{"bad listen", "api:\n  tcp:\n    listen: nonsense\n", []string{`api.tcp.listen: must be host:port`}},
		{"tls half", "api:\n  tcp:\n    tls_cert: /c.pem\n", []string{"api.tcp.tls_cert: tls_cert and tls_key must be set together"}},
		{"socket mode", "api:\n  socket_mode: \"rw\"\n", []string{`api.socket_mode: must be octal permission bits`}},
		{"driver", "gpu:\n  min_driver: \"v570\"\n", []string{`gpu.min_driver: must be a dotted driver version`}},
		{"endpoint", "model:\n  endpoint: hf-mirror.com\n", []string{`model.endpoint: must be an http(s) URL`}},
		{"glob", "model:\n  include: [\"[\"]\n", []string{`model.include[0]: must be a glob pattern`}},
		{"pull policy", "docker:\n  pull_policy: sometimes\n", []string{`docker.pull_policy: must be one of if-missing, always, never`}},
		{"ulimit name", "docker:\n  ulimits:\n    memlok: -1\n", []string{"docker.ulimits.memlok: unknown ulimit"}},
		{"model id", "sessions:\n  defaults:\n    model: qwen\n", []string{`sessions.defaults.model: must be a Hugging Face repo id`}},
		{"temperature", "sessions:\n  defaults:\n    temperature: 3\n", []string{"sessions.defaults.temperature: must be 0..2, got 3"}},
		{"version", "version: 2\n", []string{"version: unsupported config version 2"}},
		{"not a mapping", "api: 5\n", []string{`api: expected a mapping of keys, got "5"`}},
		{"list for string", "data_dir: [a]\n", []string{"data_dir: expected text"}},
		{"several at once", "log:\n  level: loud\nsessions:\n  defaults:\n    tp_size: 9\n    dp_size: 0\n",
			[]string{"log.level:", "sessions.defaults.tp_size: must be 1..8, got 9", "sessions.defaults.dp_size: must be 1..8, got 0"}},
		{"parse and validation errors together", "sessions:\n  defaults:\n    tp_size: four\n    dp_size: 0\nbogus: 1\n",
			[]string{`sessions.defaults.tp_size: expected a whole number, got "four"`, "sessions.defaults.dp_size: must be 1..8, got 0", "bogus: unknown key"}},
		{"syntax error", "log: [\n", []string{"not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, nil)
			if err == nil {
				t.Fatalf("Load accepted %q", tt.yaml)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error is not an invalid argument: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file %s: %v", path, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want a not-exist error naming the file, got %v", err)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("docker:\n  ulimits:\n    nofile: 65536\nsessions:\n  defaults:\n    tp_size: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sessions.Defaults.TPSize != 4 || c.Sessions.Defaults.MaxTokens != 30 || c.Docker.Image != Default().Docker.Image {
		t.Errorf("partial file did not merge onto defaults: %+v", c.Sessions.Defaults)
	}
	want := map[string]int64{"memlock": -1, "stack": 67108864, "nofile": 65536}
	if !reflect.DeepEqual(c.Docker.Ulimits, want) {
		t.Errorf("ulimits = %v, want %v", c.Docker.Ulimits, want)
	}
}

func TestEnvOverridesAndSecrets(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte("file-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hfHome := filepath.Join(dir, "hf")
	if err := os.MkdirAll(hfHome, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hfHome, "token"), []byte("hf_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("api:\n  tcp:\n    listen: 127.0.0.1:7443\n    token_file: "+tokenFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   []string
		check func(t *testing.T, c Config)
	}{
		{"file values", []string{"HF_HOME=" + hfHome}, func(t *testing.T, c Config) {
			if c.Secrets.APIToken != "file-token-0123456789" {
				t.Errorf("api token from file = %q", c.Secrets.APIToken)
			}
			if c.Secrets.HFToken != "hf_fromfile" {
				t.Errorf("hf token from $HF_HOME/token = %q", c.Secrets.HFToken)
			}
		}},
		{"env wins", []string{"SGLANGD_API_TOKEN=env-token-0123456789", "HF_TOKEN=hf_env", "HF_HOME=" + hfHome,
			"NGC_API_KEY=nvapi-x", "HF_ENDPOINT=https://hf-mirror.com/", "SGLANGD_DATA_DIR=/srv/sglangd", "DOCKER_HOST=unix:///x.sock"},
			func(t *testing.T, c Config) {
				if c.Secrets.APIToken != "env-token-0123456789" || c.Secrets.HFToken != "hf_env" || c.Secrets.NGCAPIKey != "nvapi-x" {
					t.Errorf("secrets = %#v", c.Secrets)
				}
				if c.Model.Endpoint != "https://hf-mirror.com" || c.DataDir != "/srv/sglangd" || c.Docker.Host != "unix:///x.sock" {
					t.Errorf("overrides not applied: endpoint %q data_dir %q docker %q", c.Model.Endpoint, c.DataDir, c.Docker.Host)
				}
			}},
		{"legacy hf variable", []string{"HUGGING_FACE_HUB_TOKEN=hf_legacy"}, func(t *testing.T, c Config) {
			if c.Secrets.HFToken != "hf_legacy" {
				t.Errorf("hf token = %q", c.Secrets.HFToken)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(path, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
			for _, s := range []string{c.Secrets.APIToken, c.Secrets.HFToken, c.Secrets.NGCAPIKey} {
				if s == "" {
					continue
				}
				for _, shown := range []string{c.Secrets.String(), c.Secrets.GoString()} {
					if strings.Contains(shown, s) {
						t.Errorf("secret %q printed by %q", s, shown)
					}
				}
			}
		})
	}
}

func TestSecretFileUnreadableNamesField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("docker:\n  ngc_api_key_file: /nonexistent/ngc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "docker.ngc_api_key_file: cannot read secret file") {
		t.Fatalf("got %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"128MiB", 128 << 20, false}, {"32GiB", 32 << 30, false}, {"32g", 32 << 30, false},
		{"500MB", 500e6, false}, {"1024", 1024, false}, {"1.5GiB", 3 << 29, false},
		{"-1", 0, true}, {"lots", 0, true}, {"MiB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "sglangd.yaml"))
	if err == nil {
		f.Add(data)
	}
	f.Add([]byte("api: {tcp: {listen: x}}\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		_ = Parse(b, &c)
		_ = c.Validate()
	})
}
