package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"go.yaml.in/yaml/v3"
)

// FieldError is one bad field: its dotted path in the file, the line where
// it stands (0 when it came from the environment or a default), and what
// was expected.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", e.Path, e.Msg, e.Line)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Unwrap classifies every field error as an invalid argument.
func (e *FieldError) Unwrap() error { return errdefs.ErrInvalidArgument }

// Errors collects field errors; Err returns them joined, or nil.
type Errors []*FieldError

// Add records a problem with the field at path.
func (es *Errors) Add(path string, line int, format string, args ...any) {
	*es = append(*es, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Err returns every error joined (one per line), or nil.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Load reads the file at path (an empty path means defaults only), applies
// environment overrides from env (os.Environ's form; nil means none),
// reads secret files and validates. The error names the file and lists
// every bad field.
func Load(path string, env []string) (Config, error) {
	c := Default()
	var errs Errors
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if errs, err = parse(data, &c); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	ApplyEnv(&c, env, &errs)
	LoadSecrets(&c, env, &errs)
	// Validate the rest too, so one run lists every problem; a field that
	// failed to parse kept its default and is not reported twice.
	bad := map[string]bool{}
	for _, e := range errs {
		bad[e.Path] = true
	}
	for _, e := range c.Validate() {
		if !bad[e.Path] {
			errs = append(errs, e)
		}
	}
	if err := errs.Err(); err != nil {
		if path == "" {
			path = "(defaults)"
		}
		return Config{}, fmt.Errorf("config file %s:\n%w", path, err)
	}
	return c, nil
}

// Parse decodes YAML onto c (which holds defaults). Unknown keys, wrong
// types and malformed values are all reported, each with its path.
func Parse(data []byte, c *Config) error {
	errs, err := parse(data, c)
	if err != nil {
		return err
	}
	return errs.Err()
}

// parse returns field errors separately from a syntax error, which makes
// the whole file unreadable.
func parse(data []byte, c *Config) (Errors, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	var errs Errors
	decodeNode("", doc.Content[0], reflect.ValueOf(c).Elem(), &errs)
	return errs, nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decodeNode walks n alongside v so every problem is reported with its
// path, instead of yaml's first-error-wins line numbers.
func decodeNode(path string, n *yaml.Node, v reflect.Value, errs *Errors) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return
			}
			errs.Add(orRoot(path), n.Line, "expected a mapping of keys, got %s", describe(n))
			return
		}
		fields := yamlFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				errs.Add(p, k.Line, "key given twice")
				continue
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				errs.Add(p, k.Line, "unknown key; expected one of: %s", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			decodeNode(p, val, v.Field(idx), errs)
		}
		return
	}
	// Leaves, lists, maps and types with their own unmarshaler: decode into
	// a fresh value so a failure leaves the default in place.
	fresh := reflect.New(v.Type())
	if v.Kind() == reflect.Map && !v.IsNil() {
		// Maps merge onto defaults key by key, like structs do.
		fresh.Elem().Set(reflect.MakeMap(v.Type()))
		for _, k := range v.MapKeys() {
			fresh.Elem().SetMapIndex(k, v.MapIndex(k))
		}
	}
	if err := n.Decode(fresh.Interface()); err != nil {
		errs.Add(orRoot(path), n.Line, "%s", cleanYAMLError(err, v.Type()))
		return
	}
	v.Set(fresh.Elem())
}

func yamlFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		out[tag] = i
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// cleanYAMLError turns yaml's "line 3: cannot unmarshal !!str `abc` into
// int" into "expected int, got \"abc\"" (the path and line are added by
// the caller).
func cleanYAMLError(err error, t reflect.Type) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if i := strings.Index(msg, "cannot unmarshal "); i >= 0 {
			rest := msg[i+len("cannot unmarshal "):]
			if j := strings.Index(rest, " into "); j >= 0 {
				got := rest[:j]
				if k := strings.IndexByte(got, '`'); k >= 0 {
					got = strings.Trim(got[k:], "`")
				}
				return fmt.Sprintf("expected %s, got %q", kindName(t), got)
			}
		}
		return msg
	}
	return err.Error()
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "text"
	case reflect.Slice:
		return "a list of " + kindName(t.Elem())
	case reflect.Map:
		return "a mapping of " + kindName(t.Elem())
	}
	return t.String()
}
