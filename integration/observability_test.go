package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/natsbridge/acr-nats-bridge/namespace/namespacetest"
)

var metricName = regexp.MustCompile(`\bbridge_[a-z0-9_]+`)

// Every metric the dashboard and the alerts query is one a live bridge exports (pulling too, so that its
// pull metrics exist): a renamed metric fails here, not on an operator's screen.
func TestDashboardAndAlertsQueryExportedMetrics(t *testing.T) {
	ns := namespacetest.New(t, namespacetest.Options{MaxWaitScale: 50})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, []string{"BRIDGE_LISTEN_ADDR=" + listen, "BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir(),
		"SSL_CERT_FILE=" + ns.CertFile, "BRIDGE_NAMESPACE_ENDPOINT=" + ns.URL, "BRIDGE_NAMESPACE_TOPIC=acr-events",
		"BRIDGE_NAMESPACE_SUBSCRIPTION=bridge", "BRIDGE_NAMESPACE_KEY=" + ns.Key, "BRIDGE_NAMESPACE_MAX_WAIT=10s"}, bridgeBin)
	require.Eventually(t, func() bool { code, _ := readyz(listen); return code == 200 }, 20*time.Second, 20*time.Millisecond)
	// A delivery, so that the labelled series of a request exist too.
	resp, err := http.Post("http://"+listen+"/eventgrid", "application/json", strings.NewReader(batchBody("obs", 0, 2)))
	require.NoError(t, err)
	resp.Body.Close()

	resp, err = http.Get("http://" + listen + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	families := map[string]string{} // name -> type
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	exported := func(name string) bool {
		if _, ok := families[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base] == "histogram" {
				return true
			}
		}
		return false
	}

	var exprs []string
	b, err := os.ReadFile(filepath.Join("..", "deployments", "grafana", "dashboard.json"))
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	require.NotEmpty(t, dash.Panels)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	b, err = os.ReadFile(filepath.Join("..", "deployments", "prometheus", "alerts.yaml"))
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	require.NoError(t, yaml.Unmarshal(b, &rules))
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	names := 0
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			names++
			assert.True(t, exported(name), "%q queries %s, which the bridge does not export", e, name)
		}
	}
	assert.Greater(t, names, 15)
}

// The alerts load in Prometheus and behave as their unit tests say (promtool, from Debian's prometheus
// package, which .ci/run installs).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed; .ci/run installs it")
		}
		t.Skip("promtool is not installed (apt-get install prometheus); CI runs this test")
	}
	dir := filepath.Join("..", "deployments", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s: %s", strings.Join(args, " "), out)
		assert.Contains(t, string(out), "SUCCESS")
	}
}
