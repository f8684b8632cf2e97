package sglangsim

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// mergeProfiles reproduces SGLang's ProfileMerger (srt/utils/profile_merger.py)
// on the first rank after its own export: every per-rank trace of the profile
// id is loaded whole, pids are relabelled "[TP00-PP01] <pid>", GPU sort
// indexes are offset by rank, and one merged-<id>.trace.json.gz is written
// and re-read to count its events. It returns the suffix of the "Profiling
// done" log line.
func (s *Server) mergeProfiles(ctx context.Context, r Rank, dir, id string) string {
	prefix := rankPrefix(&s.cfg.Args, r)
	s.log.printf(prefix, "Starting profile merge...")
	path, events, files, err := s.merge(dir, id, prefix)
	if err != nil {
		s.log.printf(prefix, "Failed to merge profiles: %v", err)
		return " Merge failed: " + err.Error()
	}
	s.log.printf(prefix, "Profile merge completed: %s", path)
	return fmt.Sprintf(" Merged trace: %s (Events: %d, Files: %d)", path, events, files)
}

type rankFile struct {
	path    string
	rank    Rank
	present map[string]bool
}

func (s *Server) merge(dir, id, logPrefix string) (string, int, int, error) {
	matches, err := filepath.Glob(filepath.Join(dir, globEscape(id)+"*.trace.json.gz"))
	if err != nil {
		return "", 0, 0, err
	}
	var files []rankFile
	for _, m := range matches {
		base := filepath.Base(m)
		if strings.HasPrefix(base, "merged-") || strings.Contains(base, "memory") || !strings.Contains(m, "TP-") {
			continue
		}
		r, present := parseRankParts(base)
		files = append(files, rankFile{path: m, rank: r, present: present})
	}
	if len(files) == 0 {
		//lint:ignore ST1005 SGLang's merger logs exactly this text.
		return "", 0, 0, fmt.Errorf("No trace files found for profile_id: %s", id)
	}
	s.log.printf(logPrefix, "Found %d trace files to merge", len(files))
	sort.SliceStable(files, func(i, j int) bool {
		a, b := files[i].rank, files[j].rank
		if a.DP != b.DP {
			return a.DP < b.DP
		}
		if a.EP != b.EP {
			return a.EP < b.EP
		}
		if a.PP != b.PP {
			return a.PP < b.PP
		}
		return a.TP < b.TP
	})
	var events, devProps []json.RawMessage
	var otherKeys []string
	others := map[string]json.RawMessage{}
	for _, f := range files {
		top, order, err := readTraceTop(f.path)
		if err != nil {
			s.log.printf(logPrefix, "Failed to process trace file %s: %v", f.path, err)
			continue
		}
		label := rankLabel(f)
		var evs []map[string]json.RawMessage
		if raw, ok := top["traceEvents"]; ok {
			if err := json.Unmarshal(raw, &evs); err != nil {
				s.log.printf(logPrefix, "Failed to process trace file %s: %v", f.path, err)
				continue
			}
		}
		for _, e := range evs {
			relabel(e, label, f.rank)
			b, _ := json.Marshal(e)
			events = append(events, b)
		}
		if raw, ok := top["deviceProperties"]; ok {
			var dp []json.RawMessage
			if json.Unmarshal(raw, &dp) == nil {
				devProps = append(devProps, dp...)
			}
		}
		for _, k := range order {
			if k == "traceEvents" || k == "deviceProperties" {
				continue
			}
			if _, ok := others[k]; !ok {
				others[k] = top[k]
				otherKeys = append(otherKeys, k)
			}
		}
	}
	out := filepath.Join(dir, MergedFileName(id))
	var buf bytes.Buffer
	buf.WriteString(`{"traceEvents": [`)
	for i, e := range events {
		if i > 0 {
			buf.WriteString(", ")
		}
		buf.Write(e)
	}
	buf.WriteString(`], "deviceProperties": [`)
	for i, d := range devProps {
		if i > 0 {
			buf.WriteString(", ")
		}
		buf.Write(d)
	}
	buf.WriteString("]")
	for _, k := range otherKeys {
		kb, _ := json.Marshal(k)
		buf.WriteString(", ")
		buf.Write(kb)
		buf.WriteString(": ")
		buf.Write(others[k])
	}
	buf.WriteString("}")
	if err := writeGzipAtomic(out, buf.Bytes()); err != nil {
		return "", 0, 0, fmt.Errorf("write %s: %w", out, err)
	}
	n, err := countMergedEvents(out)
	if err != nil {
		return "", 0, 0, fmt.Errorf("re-read %s: %w", out, err)
	}
	return out, n, len(files), nil
}

// rankLabel is "[TP01-DP00-PP02]" with the dimensions present in the name.
func rankLabel(f rankFile) string {
	var parts []string
	for _, d := range []struct {
		k string
		v int
	}{{"TP", f.rank.TP}, {"DP", f.rank.DP}, {"PP", f.rank.PP}, {"EP", f.rank.EP}} {
		if f.present[d.k] {
			parts = append(parts, fmt.Sprintf("%s%02d", d.k, d.v))
		}
	}
	if len(parts) == 0 {
		return "[Unknown]"
	}
	return "[" + strings.Join(parts, "-") + "]"
}

func relabel(e map[string]json.RawMessage, label string, r Rank) {
	raw, ok := e["pid"]
	if !ok {
		return
	}
	pidText := string(raw)
	var ps string
	isInt := false
	var pidNum int64
	if json.Unmarshal(raw, &ps) == nil {
		pidText = ps
	} else if n, err := strconv.ParseInt(pidText, 10, 64); err == nil {
		isInt, pidNum = true, n
	}
	if name, ok := e["name"]; ok && string(name) == `"process_sort_index"` && isInt && pidNum < 1000 {
		var args map[string]json.RawMessage
		if json.Unmarshal(e["args"], &args) == nil {
			idx := int64(r.DP)*100000000 + int64(r.EP)*1000000 + int64(r.PP)*10000 + int64(r.TP)*100 + pidNum
			args["sort_index"] = json.RawMessage(strconv.FormatInt(idx, 10))
			e["args"], _ = json.Marshal(args)
		}
	}
	e["pid"], _ = json.Marshal(label + " " + pidText)
}

// readTraceTop decodes a gzip trace's top-level object, keeping key order.
func readTraceTop(path string) (map[string]json.RawMessage, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(zr)
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("trace is not a JSON object")
	}
	top := map[string]json.RawMessage{}
	var order []string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		top[k] = v
		order = append(order, k)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, nil, err
	}
	return top, order, nil
}

func countMergedEvents(path string) (int, error) {
	top, _, err := readTraceTop(path)
	if err != nil {
		return 0, err
	}
	var evs []json.RawMessage
	if err := json.Unmarshal(top["traceEvents"], &evs); err != nil {
		return 0, err
	}
	return len(evs), nil
}

func writeGzipAtomic(path string, data []byte) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return writeFileAtomic(path, buf.Bytes())
}

// globEscape quotes glob metacharacters in a profile id.
func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}
