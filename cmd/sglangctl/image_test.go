package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sglangd/sglangd/pkg/api"
)

func TestLineDisplay(t *testing.T) {
	var buf bytes.Buffer
	d := newLineDisplay(&buf)
	for _, ev := range []api.ImagePullEvent{
		{Status: "Pulling from nvidia/sglang"},
		{Layer: "aaa", Status: "Pulling fs layer"},
		{Layer: "aaa", Status: "Downloading", Current: 1, Total: 1000},
		{Layer: "aaa", Status: "Downloading", Current: 100, Total: 1000}, // same quarter: quiet
		{Layer: "aaa", Status: "Downloading", Current: 600, Total: 1000},
		{Layer: "aaa", Status: "Downloading", Current: 700, Total: 1000}, // same quarter: quiet
		{Layer: "aaa", Status: "Download complete"},
		{Layer: "aaa", Status: "Pull complete"},
		{Layer: "bbb", Status: "Already exists"},
		{Status: "Digest: sha256:abc"},
	} {
		d.event(ev)
	}
	d.finish(true)
	want := `Pulling from nvidia/sglang
aaa: Pulling fs layer
aaa: Downloading 1B / 1kB
aaa: Downloading 600B / 1kB
aaa: Download complete
aaa: Pull complete
bbb: Already exists
Digest: sha256:abc
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestPrintImages(t *testing.T) {
	var buf bytes.Buffer
	_ = printImages(&buf, []api.Image{{Ref: "nvcr.io/nvidia/sglang:26.01-py3", ID: "sha256:0123456789abcdef", Size: 17_300_000_000,
		CUDAVersion: "13.0.2", Pulled: true, CredentialSource: "ngc_api_key"}}, true)
	out := buf.String()
	for _, want := range []string{"nvcr.io/nvidia/sglang:26.01-py3", "0123456789ab\t", "17.3GB", "13.0.2", "true", "ngc_api_key"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
