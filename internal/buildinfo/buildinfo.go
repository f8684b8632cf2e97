// Package buildinfo reports the version and commit compiled into sglangd's
// binaries (set by the Makefile through -ldflags -X), falling back to the
// module information Go records itself.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/sglangd/sglangd/pkg/api"
)

// Version and Commit are set at link time:
//
//	-ldflags "-X github.com/sglangd/sglangd/internal/buildinfo.Version=v0.1.0"
var (
	Version = ""
	Commit  = ""
)

// Get returns the running binary's build information.
func Get() api.BuildInfo {
	b := api.BuildInfo{Version: Version, Commit: Commit, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && b.Commit == "" {
				b.Commit = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}
