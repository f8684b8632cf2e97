package model

import (
	"net/http"
	"testing"
	"time"
)

func TestFilter_match(t *testing.T) {
	tests := []struct {
		include, exclude []string
		path             string
		want             bool
	}{
		{DefaultInclude, DefaultExclude, "model-00001-of-00004.safetensors", true},
		{DefaultInclude, DefaultExclude, "config.json", true},
		{DefaultInclude, DefaultExclude, "tokenizer.model", true},
		{DefaultInclude, DefaultExclude, "tokenizer_config.json", true},
		{DefaultInclude, DefaultExclude, "pytorch_model-00001-of-00002.bin", false},
		{DefaultInclude, DefaultExclude, "original/params.json", false},
		{DefaultInclude, DefaultExclude, "consolidated.pth", false},
		{DefaultInclude, DefaultExclude, "onnx/model.onnx", false},
		// fnmatch: "*" crosses directories, like huggingface_hub's patterns.
		{DefaultInclude, DefaultExclude, "text_encoder/model.safetensors", true},
		{[]string{"sub/"}, nil, "sub/a/b.txt", true},
		{[]string{"sub/"}, nil, "other/sub/a", false},
		{[]string{"model-0000[1-2]-*"}, nil, "model-00002-of-00004.safetensors", true},
		{[]string{"model-0000[!1-2]-*"}, nil, "model-00002-of-00004.safetensors", false},
		{[]string{"?.json"}, nil, "a.json", true},
		{[]string{"?.json"}, nil, "ab.json", false},
		{[]string{"a.json"}, nil, "a_json", false},
		{nil, []string{"*"}, "anything", false},
		{nil, nil, "anything", true},
	}
	for _, tt := range tests {
		f, err := newFilter(tt.include, tt.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.match(tt.path); got != tt.want {
			t.Errorf("include %v exclude %v: match(%q) = %v, want %v", tt.include, tt.exclude, tt.path, got, tt.want)
		}
	}
}

func TestCheckRelPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"config.json": true, "a/b/c.safetensors": true, "..foo": true, "a/..b/c": true,
		"": false, "/etc/passwd": false, "../x": false, "a/../b": false, "a/./b": false, `a\..\b`: false,
		"C:x": false, `\\server\share`: false, "a//b": false, "a/": false, "a\x00b": false,
	} {
		if err := checkRelPath(p); (err == nil) != ok {
			t.Errorf("checkRelPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestServerWait(t *testing.T) {
	tests := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{http.Header{"Ratelimit": {`"api";r=0;t=55`}}, 56 * time.Second},
		{http.Header{"Ratelimit": {`"api";r=0;t=4`}, "Retry-After": {"100"}}, 5 * time.Second},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{}, 0},
	}
	for _, tt := range tests {
		if got := serverWait(tt.h); got != tt.want {
			t.Errorf("serverWait(%v) = %s, want %s", tt.h, got, tt.want)
		}
	}
	p := retryPolicy{base: time.Second, max: 8 * time.Second, maxServerWait: time.Minute}
	for attempt, hi := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if d := p.delay(attempt, nil); d < hi/2 || d > hi {
			t.Errorf("delay(%d) = %s, want %s..%s", attempt, d, hi/2, hi)
		}
	}
	if d := p.delay(0, http.Header{"Retry-After": {"3600"}}); d != time.Minute {
		t.Errorf("a long Retry-After is capped: got %s", d)
	}
}

func TestCheckContentRange(t *testing.T) {
	tests := []struct {
		h                string
		start, end, size int64
		ok               bool
	}{
		{"bytes 0-99/1000", 0, 99, 1000, true},
		{"bytes 100-199/1000", 100, 199, 1000, true},
		{"bytes 100-199/1001", 100, 199, 1000, false},
		{"bytes 0-999/1000", 100, 199, 1000, false},
		{"bytes 100-199/*", 100, 199, 1000, false},
		{"", 0, 99, 1000, false},
		{"bytes=0-99/1000", 0, 99, 1000, false},
	}
	for _, tt := range tests {
		if err := checkContentRange(tt.h, tt.start, tt.end, tt.size); (err == nil) != tt.ok {
			t.Errorf("checkContentRange(%q) = %v, want ok=%v", tt.h, err, tt.ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/1000", "bytes 5-5/6", "bytes 1-0/5", "bytes 0-1/*", "bytes -1-2/3", "bytes 0-9/9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, end, size, err := parseContentRange(h)
		if err != nil {
			return
		}
		if start < 0 || end < start || (size != -1 && size <= end) {
			t.Errorf("parseContentRange(%q) = %d-%d/%d, which is not a valid range", h, start, end, size)
		}
	})
}

func TestLinkTarget(t *testing.T) {
	for rel, want := range map[string]string{
		"config.json":       "../../blobs/e",
		"a/config.json":     "../../../blobs/e",
		"a/b/c/config.json": "../../../../../blobs/e",
	} {
		if got := linkTarget(rel, "e"); got != want {
			t.Errorf("linkTarget(%q) = %q, want %q", rel, got, want)
		}
	}
}
