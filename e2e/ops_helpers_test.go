package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// upWithHTTP matches the ready line of `paddock up` with its HTTP listener
// on; the one submatch holds both addresses (see splitUpLine).
var upWithHTTP = regexp.MustCompile(`^paddock is up: storage, scheduler and worker on (\S+, data in \S+, status page and metrics on http://\S+)/$`)

// startUpHTTP starts `paddock up` with its HTTP listener on a free
// loopback port and returns the farm and the HTTP address.
func startUpHTTP(t testing.TB, extra ...string) (*farm, string) {
	t.Helper()
	needPaddock(t)
	data := searchableTempDir(t) + "/data"
	args := append([]string{"up", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, extra...)
	p, line := startProcess(t, "up", upWithHTTP, args...)
	addr, rest, _ := strings.Cut(line, ", data in ")
	_, httpAddr, _ := strings.Cut(rest, "http://")
	return &farm{process: p, addr: addr, data: data}, httpAddr
}

// httpGet fetches url and returns the status code and body.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape fetches and parses the Prometheus metrics at http://addr/metrics.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// familyValue sums a family's series whose labels include every pair of
// want (NAME=VALUE): counters' and gauges' values, histograms' and
// summaries' sample counts. ok is false if the family is absent.
func familyValue(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	sum := 0.0
	for _, m := range f.Metric {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.Summary.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, true
}

func hasLabels(m *dto.Metric, want []string) bool {
	for _, w := range want {
		name, value, _ := strings.Cut(w, "=")
		found := false
		for _, l := range m.Label {
			if l.GetName() == name && l.GetValue() == value {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// checkNonZero fails the test for each "family{label=value,...}" of names
// that is absent or sums to zero.
func checkNonZero(t testing.TB, fams map[string]*dto.MetricFamily, names ...string) {
	t.Helper()
	for _, n := range names {
		name, labels, _ := strings.Cut(strings.TrimSuffix(n, "}"), "{")
		var want []string
		if labels != "" {
			want = strings.Split(labels, ",")
		}
		v, ok := familyValue(fams, name, want...)
		switch {
		case !ok:
			t.Errorf("metric family %s is not served", name)
		case v <= 0:
			t.Errorf("metric %s is %v, want more than zero", n, v)
		}
	}
}
