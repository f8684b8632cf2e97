package gpu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Version is a dotted numeric version such as a driver's "580.65.06" or a
// CUDA release's "12.8". Components compare as numbers, so "570.172.08" is
// newer than "570.26", and missing trailing components count as zero, so
// "570" equals "570.0.0". Leading zeros carry no meaning ("06" is 6).
type Version []uint64

// ParseVersion parses a dotted numeric version. Anything else - empty
// text, empty components ("570..1"), signs, letters ("535.x") - is an
// invalid argument naming the text.
func ParseVersion(s string) (Version, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return nil, fmt.Errorf("version %q: %w: expected dotted numbers such as 570 or 580.65.06", s, errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(t, ".")
	v := make(Version, 0, len(parts))
	for _, p := range parts {
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return nil, fmt.Errorf("version %q: %w: component %q is not a number; expected dotted numbers such as 570 or 580.65.06", s, errdefs.ErrInvalidArgument, p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("version %q: %w: component %q is out of range", s, errdefs.ErrInvalidArgument, p)
		}
		v = append(v, n)
	}
	return v, nil
}

// MustParseVersion is ParseVersion for constants; it panics on bad input.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for i := 0; i < len(v) || i < len(w); i++ {
		var a, b uint64
		if i < len(v) {
			a = v[i]
		}
		if i < len(w) {
			b = w[i]
		}
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
	}
	return 0
}

// AtLeast reports whether v is w or newer.
func (v Version) AtLeast(w Version) bool { return v.Compare(w) >= 0 }

// String prints the version with plain decimal components; use the text
// it was parsed from when the original spelling matters ("580.65.06").
func (v Version) String() string {
	var b strings.Builder
	for i, n := range v {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(n, 10))
	}
	return b.String()
}
