package model

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
)

// DefaultInclude is what SGLang needs to serve a model: safetensors
// weights, configs, tokenizer files and custom code. Callers normally pass
// their configured list; these are the defaults when they pass none.
var DefaultInclude = []string{"*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken",
	"*.py", "*.jinja", "tokenizer*", "*.md"}

// DefaultExclude drops duplicates of the safetensors weights in other
// formats and the original (non-HF) checkpoints some repos carry.
var DefaultExclude = []string{"*.pth", "*.bin", "*.pt", "*.msgpack", "*.h5", "*.onnx", "original/*", "*.gguf"}

// filter selects repository paths with include/exclude globs the way
// huggingface_hub's allow_patterns/ignore_patterns do: Python fnmatch, so
// "*" also matches "/", and a pattern ending in "/" means everything
// below that directory.
type filter struct {
	include, exclude []*regexp.Regexp
}

func newFilter(include, exclude []string) (*filter, error) {
	f := &filter{}
	for _, set := range []struct {
		name string
		pats []string
		out  *[]*regexp.Regexp
	}{{"include", include, &f.include}, {"exclude", exclude, &f.exclude}} {
		for _, p := range set.pats {
			re, err := globRegexp(p)
			if err != nil {
				return nil, fmt.Errorf("%s pattern %q: %v: %w", set.name, p, err, errdefs.ErrInvalidArgument)
			}
			*set.out = append(*set.out, re)
		}
	}
	return f, nil
}

// match reports whether path is selected: it matches an include pattern
// (or there are none) and no exclude pattern.
func (f *filter) match(path string) bool {
	if len(f.include) > 0 && !anyMatch(f.include, path) {
		return false
	}
	return !anyMatch(f.exclude, path)
}

func anyMatch(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// globRegexp translates an fnmatch pattern into an anchored regexp.
func globRegexp(pat string) (*regexp.Regexp, error) {
	if pat == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	if strings.HasSuffix(pat, "/") {
		pat += "*"
	}
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			if j < len(pat) && (pat[j] == '!' || pat[j] == '^') {
				j++
			}
			if j < len(pat) && pat[j] == ']' {
				j++
			}
			for j < len(pat) && pat[j] != ']' {
				j++
			}
			if j >= len(pat) {
				// fnmatch treats an unclosed bracket as a literal.
				b.WriteString(`\[`)
				continue
			}
			class := pat[i+1 : j]
			neg := strings.HasPrefix(class, "!") || strings.HasPrefix(class, "^")
			if neg {
				class = class[1:]
			}
			b.WriteByte('[')
			if neg {
				b.WriteByte('^')
			}
			b.WriteString(strings.ReplaceAll(class, `\`, `\\`))
			b.WriteByte(']')
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`)$`)
	return regexp.Compile(b.String())
}
