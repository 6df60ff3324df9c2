// The dashboard and the alert rules in scripts/deploy/monitoring name only
// metrics the daemon exports, so neither can drift from the code; and the
// rules pass promtool's check and their own unit tests.

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

const monitoringDir = "../../scripts/deploy/monitoring"

var (
	promString     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promLabelLists = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent      = regexp.MustCompile(`\$?\b[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords   = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression selects: what is
// left once strings, label matchers, ranges, grouping label lists,
// functions, keywords and dashboard variables are taken out.
func metricNames(expr string) []string {
	expr = promString.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promLabelLists.ReplaceAllString(expr, " ")
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(expr, -1) {
		tok := m[0]
		if m[1] != "" || strings.HasPrefix(tok, "$") || slices.Contains(promKeywords, strings.ToLower(tok)) {
			continue
		}
		names = append(names, tok)
	}
	return names
}

func TestMetricNamesOfAnExpression(t *testing.T) {
	got := metricNames(`sum by (instance, le) (rate(a_b_bucket{op="get", instance=~"$instance"}[$__rate_interval])) / clamp_min(c_total + on(instance) d, 1e-9) > 0 and up{job="x"} == 0`)
	if want := []string{"a_b_bucket", "c_total", "d", "up"}; !slices.Equal(got, want) {
		t.Fatalf("metricNames = %q, want %q", got, want)
	}
}

// exportedNames is every series name the daemon's /metrics page can carry.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	c, err := cache.Open(cache.Options{Dir: t.TempDir(), Store: objstore.NewMem(), MaxSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := newMetrics()
	m.watch(c)
	// Vectors with no child yet are not gathered: give each one.
	m.observeFUSE("lookup", time.Millisecond, 0)
	m.s3Requests.WithLabelValues("get", "ok").Observe(0.01)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"up": true} // Prometheus's own, per scrape target
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+suffix] = true
			}
		}
	}
	return names
}

// monitoringExprs returns every PromQL expression in the dashboard and
// the rules, by where it is.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(monitoringDir, "s3mediafs-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			exprs["dashboard panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range dash.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			exprs["dashboard variable "+v.Name] = m[1]
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string
				Expr  string
			}
		}
	}
	b, err = os.ReadFile(filepath.Join(monitoringDir, "s3mediafs-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	return exprs
}

func TestDashboardAndRulesNameExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	used := map[string]bool{}
	for where, expr := range monitoringExprs(t) {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s names %s, which the daemon does not export", where, n)
			}
		}
	}
	// What the dashboard and the rules are for: each of these is watched.
	for _, n := range []string{"s3mediafs_upload_queue_depth", "s3mediafs_upload_queue_oldest_seconds",
		"s3mediafs_dirty_bytes", "s3mediafs_dirty_limit_bytes", "s3mediafs_cache_bytes", "s3mediafs_cache_limit_bytes",
		"s3mediafs_cache_filesystem_free_bytes", "s3mediafs_cache_filesystem_min_free_bytes",
		"s3mediafs_cache_hits_total", "s3mediafs_cache_misses_total", "s3mediafs_s3_request_duration_seconds_bucket",
		"s3mediafs_s3_request_duration_seconds_count", "s3mediafs_upload_errors_total",
		"s3mediafs_fuse_operation_duration_seconds_bucket", "up"} {
		if !used[n] {
			t.Errorf("neither the dashboard nor the rules watch %s", n)
		}
	}
}

// TestAlertRulesPassPromtool runs Prometheus's own checker and the rules'
// unit tests. CI installs promtool (Debian's prometheus package); a
// developer's machine without it skips.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing; .ci/run installs it")
		}
		t.Skip("no promtool here")
	}
	for _, args := range [][]string{{"check", "rules", "s3mediafs-rules.yaml"}, {"test", "rules", "s3mediafs-rules.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = monitoringDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
