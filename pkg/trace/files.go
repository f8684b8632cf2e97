package trace

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Rank identifies a per-rank trace by the parallelism coordinates SGLang
// writes into its file names ("...-TP-1-DP-0-PP-2-EP-3[-EXTEND].trace.json.gz").
type Rank struct {
	TP    int    `json:"tp"`
	DP    int    `json:"dp"`
	PP    int    `json:"pp"`
	EP    int    `json:"ep"`
	HasTP bool   `json:"has_tp,omitempty"`
	HasDP bool   `json:"has_dp,omitempty"`
	HasPP bool   `json:"has_pp,omitempty"`
	HasEP bool   `json:"has_ep,omitempty"`
	Stage string `json:"stage,omitempty"`
}

// Known reports whether the name carried any rank coordinate.
func (r Rank) Known() bool { return r.HasTP || r.HasDP || r.HasPP || r.HasEP }

// Label returns SGLang's process label, "[TP01-DP00-PP02-EP03]" with only the
// coordinates present in the name, or "[Unknown]".
func (r Rank) Label() string {
	var parts []string
	add := func(has bool, name string, v int) {
		if has {
			parts = append(parts, fmt.Sprintf("%s%02d", name, v))
		}
	}
	add(r.HasTP, "TP", r.TP)
	add(r.HasDP, "DP", r.DP)
	add(r.HasPP, "PP", r.PP)
	add(r.HasEP, "EP", r.EP)
	if len(parts) == 0 {
		return "[Unknown]"
	}
	return "[" + strings.Join(parts, "-") + "]"
}

// String is the label plus the stage, when the file holds one stage only.
func (r Rank) String() string {
	if r.Stage != "" {
		return r.Label() + " " + r.Stage
	}
	return r.Label()
}

func stageOrder(s string) int {
	switch strings.ToUpper(s) {
	case "":
		return 0
	case "EXTEND", "PREFILL":
		return 1
	case "DECODE":
		return 2
	}
	return 3
}

// compareRanks orders ranks as SGLang's merger does, by DP, EP, PP, TP, then
// by stage (prefill before decode).
func compareRanks(a, b Rank) int {
	return cmp.Or(cmp.Compare(a.DP, b.DP), cmp.Compare(a.EP, b.EP), cmp.Compare(a.PP, b.PP),
		cmp.Compare(a.TP, b.TP), cmp.Compare(stageOrder(a.Stage), stageOrder(b.Stage)), strings.Compare(a.Stage, b.Stage))
}

// RankFile is one trace file with the rank parsed from its name.
type RankFile struct {
	Path string `json:"path"`
	Rank Rank   `json:"rank"`
	// Profile is the part of the name before "-TP-": the profile id with any
	// user prefix.
	Profile string `json:"profile,omitempty"`
}

var (
	rankPartRe = regexp.MustCompile(`(?:^|[-_.])(TP|DP|PP|EP)-(\d+)`)
	stageRe    = regexp.MustCompile(`-(EXTEND|DECODE|prefill|decode)$`)
	genericRe  = regexp.MustCompile(`(?i)rank[-_]?(\d+)`)
)

// traceExt returns the name without a trace extension, or false when the
// name is not a trace file.
func traceExt(name string) (string, bool) {
	for _, ext := range []string{".trace.json.gz", ".trace.json", ".json.gz", ".json"} {
		if strings.HasSuffix(name, ext) {
			return strings.TrimSuffix(name, ext), true
		}
	}
	return "", false
}

// ParseRankFile parses SGLang's per-rank trace name. ok is false for names
// that are not trace files or carry no TP/DP/PP/EP part.
func ParseRankFile(path string) (RankFile, bool) {
	base := filepath.Base(path)
	stem, ok := traceExt(base)
	if !ok {
		return RankFile{}, false
	}
	rf := RankFile{Path: path}
	if m := stageRe.FindStringSubmatch(stem); m != nil {
		rf.Rank.Stage = m[1]
		stem = strings.TrimSuffix(stem, m[0])
	}
	locs := rankPartRe.FindAllStringSubmatchIndex(stem, -1)
	if len(locs) == 0 {
		return rf, false
	}
	for _, l := range locs {
		v, err := strconv.Atoi(stem[l[4]:l[5]])
		if err != nil {
			return rf, false
		}
		switch stem[l[2]:l[3]] {
		case "TP":
			rf.Rank.TP, rf.Rank.HasTP = v, true
		case "DP":
			rf.Rank.DP, rf.Rank.HasDP = v, true
		case "PP":
			rf.Rank.PP, rf.Rank.HasPP = v, true
		case "EP":
			rf.Rank.EP, rf.Rank.HasEP = v, true
		}
	}
	if i := strings.Index(stem, "-TP-"); i >= 0 {
		rf.Profile = stem[:i]
	} else {
		rf.Profile = strings.TrimRight(stem[:locs[0][0]], "-_.")
	}
	return rf, true
}

// DiscoverOptions narrows Discover.
type DiscoverOptions struct {
	// Profile selects one profile id (with prefix) when the directory holds
	// several; empty means the directory must hold exactly one.
	Profile string
	// Exclude lists paths to ignore, such as a merge output in the same
	// directory.
	Exclude []string
}

// Discover lists the per-rank traces in dir in rank order. It recognises
// SGLang's names (prefix, profile id, TP/DP/PP/EP and stage parts) and skips
// merged and memory files. A directory without SGLang names yields every
// trace file in it, ranked by a "rank<N>" part of the name when present.
func Discover(dir string, opts DiscoverOptions) ([]RankFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("trace directory %s: %w", dir, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read trace directory %s: %w", dir, err)
	}
	excluded := map[string]bool{}
	for _, e := range opts.Exclude {
		if a, err := filepath.Abs(e); err == nil {
			excluded[a] = true
		}
	}
	var named, generic []RankFile
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, "merged-") || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		if a, err := filepath.Abs(p); err == nil && excluded[a] {
			continue
		}
		if _, ok := traceExt(name); !ok {
			continue
		}
		if rf, ok := ParseRankFile(p); ok {
			named = append(named, rf)
			continue
		}
		rf := RankFile{Path: p}
		if m := genericRe.FindStringSubmatch(name); m != nil {
			if v, err := strconv.Atoi(m[1]); err == nil {
				rf.Rank.TP, rf.Rank.HasTP = v, true
			}
		}
		generic = append(generic, rf)
	}
	files := named
	if len(named) == 0 {
		files = generic
	} else {
		profiles := map[string]int{}
		for _, f := range named {
			profiles[f.Profile]++
		}
		if opts.Profile != "" {
			files = slices.DeleteFunc(files, func(f RankFile) bool { return f.Profile != opts.Profile })
			if len(files) == 0 {
				return nil, fmt.Errorf("no trace files for profile %q in %s (found %s): %w", opts.Profile, dir, strings.Join(sortedKeys(profiles), ", "), errdefs.ErrNotFound)
			}
		} else if len(profiles) > 1 {
			return nil, fmt.Errorf("%s holds traces of %d profiles (%s): choose one (sglangctl: --profile ID; API: profile): %w", dir, len(profiles), strings.Join(sortedKeys(profiles), ", "), errdefs.ErrInvalidArgument)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no trace files (*.trace.json.gz, *.json.gz, *.json) in %s: %w", dir, errdefs.ErrNotFound)
	}
	slices.SortStableFunc(files, func(a, b RankFile) int {
		return cmp.Or(compareRanks(a.Rank, b.Rank), strings.Compare(a.Path, b.Path))
	})
	for i := 1; i < len(files) && len(named) > 0; i++ {
		if files[i].Rank == files[i-1].Rank {
			return nil, fmt.Errorf("%s and %s carry the same rank %s: %w", files[i-1].Path, files[i].Path, files[i].Rank, errdefs.ErrInvalidArgument)
		}
	}
	return files, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
