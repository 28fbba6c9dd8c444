package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// helmVersion is the helm the chart is rendered and linted with, built from its module.
const helmVersion = "v3.22.0"

var chartDir = filepath.Join("..", "deployments", "helm", "acr-nats-bridge")

// TestHelmChart builds helm from its module, lints the chart, renders it with its default values and
// with a production-like values file, and checks the rendered objects as TestKubernetesManifests checks
// the raw manifests.
func TestHelmChart(t *testing.T) {
	helm, _ := buildFromModule(t, "helm.sh/helm/v3", helmVersion, "helm.sh/helm/v3/cmd/helm")
	// The cluster's version, as helm install and Argo CD give it; helm template's offline default (1.20)
	// is under the chart's kubeVersion.
	const kube = "1.31.0"
	run := func(t *testing.T, args ...string) []byte {
		t.Helper()
		args = append(args, "--kube-version", kube)
		cmd := exec.Command(helm, args...)
		// helm keeps its caches and repositories under HOME; the test needs none of them.
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "HELM_CACHE_HOME="+t.TempDir(),
			"HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
		return out
	}
	production := filepath.Join(chartDir, "ci", "production-values.yaml")

	t.Run("lint", func(t *testing.T) {
		out := run(t, "lint", "--strict", chartDir, "--set", "auth.generateToken=true")
		assert.Contains(t, string(out), "0 chart(s) failed")
		out = run(t, "lint", "--strict", chartDir, "-f", production)
		assert.Contains(t, string(out), "0 chart(s) failed")
	})

	t.Run("defaults", func(t *testing.T) {
		// No way to authenticate was given: the chart renders nothing rather than a secret made up at
		// render time, which GitOps tools would render anew each time.
		cmd := exec.Command(helm, "template", "bridge", chartDir, "--namespace", "events", "--kube-version", kube)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "no way to authenticate deliveries: set auth.existingSecret")

		token := []string{"--set", "auth.tokens[0]=0123456789abcdef0123456789abcdef"}
		rendered := run(t, append([]string{"template", "bridge", chartDir, "--namespace", "events"}, token...)...)
		assert.Equal(t, string(rendered), string(run(t, append([]string{"template", "bridge", chartDir, "--namespace", "events"}, token...)...)),
			"two renders are the same")
		objects := k8sObjects(t, rendered)
		checkWorkload(t, objects)
		assert.Equal(t, "0123456789abcdef0123456789abcdef", objects["Secret"].StringData["BRIDGE_AUTH_TOKENS"])
		assert.NotContains(t, objects, "ServiceMonitor")
		assert.NotContains(t, objects, "PrometheusRule")

		// Asked for: a token generated at install.
		objects = k8sObjects(t, run(t, "template", "bridge", chartDir, "--namespace", "events", "--set", "auth.generateToken=true"))
		assert.Len(t, objects["Secret"].StringData["BRIDGE_AUTH_TOKENS"], 48)

		cmd = exec.Command(helm, "template", "bridge", chartDir, "--kube-version", kube, "--set", "auth.tokens[0]=short")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err = cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "auth.tokens: each token needs at least 16 random characters")
	})

	t.Run("registry lookups", func(t *testing.T) {
		envOf := func(objects map[string]k8sObject) map[string]string {
			env := map[string]string{}
			for _, e := range objects["Deployment"].Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
			return env
		}
		// Unquoted, YAML reads off as false: still off.
		off := filepath.Join(t.TempDir(), "off.yaml")
		require.NoError(t, os.WriteFile(off, []byte("registryLookup:\n  mode: off\n"), 0o600))
		for _, args := range [][]string{nil, {"-f", off}} {
			env := envOf(k8sObjects(t, run(t, append([]string{"template", "bridge", chartDir, "--set", "auth.generateToken=true"}, args...)...)))
			assert.NotContains(t, env, "BRIDGE_REGISTRY_LOOKUP", args)
		}
		cmd := exec.Command(helm, "template", "bridge", chartDir, "--kube-version", kube, "--set", "auth.generateToken=true", "--set", "registryLookup.mode=required", "--set", "registryLookup.auth=basic")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "registryLookup.credentialsSecret is required with registryLookup.auth basic")

		objects := k8sObjects(t, run(t, "template", "bridge", chartDir, "--set", "auth.generateToken=true", "--set", "registryLookup.mode=required",
			"--set", "registryLookup.auth=basic", "--set", "registryLookup.credentialsSecret=acr-token"))
		env := envOf(objects)
		assert.Equal(t, "required", env["BRIDGE_REGISTRY_LOOKUP"])
		assert.Equal(t, "basic", env["BRIDGE_REGISTRY_AUTH"])
		assert.NotContains(t, env, "BRIDGE_REGISTRY_HOSTS", "the bridge's default hosts")
		refs := 0
		for _, e := range objects["Deployment"].Spec.Template.Spec.Containers[0].Env {
			if e.Name == "BRIDGE_REGISTRY_USERNAME" || e.Name == "BRIDGE_REGISTRY_PASSWORD" {
				require.NotNil(t, e.ValueFrom, e.Name)
				assert.Equal(t, "acr-token", e.ValueFrom.SecretKeyRef.Name)
				refs++
			}
		}
		assert.Equal(t, 2, refs)
	})

	t.Run("production", func(t *testing.T) {
		rendered := run(t, "template", "bridge", chartDir, "--namespace", "events", "-f", production)
		assert.Equal(t, string(rendered), string(run(t, "template", "bridge", chartDir, "--namespace", "events", "-f", production)), "two renders are the same")
		objects := k8sObjects(t, rendered)
		checkWorkload(t, objects)
		assert.NotContains(t, objects, "Secret", "the production values use Secrets made ahead")
		env := map[string]string{}
		for _, e := range objects["Deployment"].Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		for _, name := range []string{"BRIDGE_ENTRA_TENANT_ID", "BRIDGE_ENTRA_AUDIENCE", "BRIDGE_NATS_CREDS",
			"BRIDGE_NATS_TLS_CA", "BRIDGE_TLS_CERT_FILE", "BRIDGE_TLS_KEY_FILE", "BRIDGE_NAMESPACE_ENDPOINT",
			"BRIDGE_NAMESPACE_TOPIC", "BRIDGE_NAMESPACE_SUBSCRIPTION", "BRIDGE_NAMESPACE_KEY", "BRIDGE_LOG_LEVEL",
			"BRIDGE_REGISTRY_LOOKUP", "BRIDGE_REGISTRY_AUTH", "BRIDGE_REGISTRY_HOSTS"} {
			assert.Contains(t, env, name)
		}
		assert.Equal(t, "921MiB", env["GOMEMLIMIT"], "90 % of the 1Gi limit")
		checkMonitoring(t, rendered)
	})

	t.Run("alerts are the repository's", func(t *testing.T) {
		chart, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yaml"))
		require.NoError(t, err)
		repo, err := os.ReadFile(filepath.Join("..", "deployments", "prometheus", "alerts.yaml"))
		require.NoError(t, err)
		assert.Equal(t, string(repo), string(chart), "copy deployments/prometheus/alerts.yaml into the chart's files/")
	})

	t.Run("what an operator can get wrong", func(t *testing.T) {
		fails := func(want string, args ...string) {
			t.Helper()
			cmd := exec.Command(helm, append([]string{"template", "bridge", chartDir, "--set", "auth.generateToken=true", "--kube-version", kube}, args...)...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "%s", out)
			assert.Contains(t, string(out), want)
		}
		fails("goMemLimitPercent 150: a share of resources.limits.memory from 10 to 100", "--set", "goMemLimitPercent=150")
		fails("goMemLimitPercent 0", "--set", "goMemLimitPercent=0")
		fails("chart requires kubeVersion", "--kube-version", "1.29.0") // the last --kube-version wins

		chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
		require.NoError(t, err)
		assert.Contains(t, string(chart), `kubeVersion: ">=1.30.0-0"`, "preStop sleep needs 1.30")

		pull := func(args ...string) string {
			objects := k8sObjects(t, run(t, append([]string{"template", "bridge", chartDir, "--set", "auth.generateToken=true"}, args...)...))
			return objects["Deployment"].Spec.Template.Spec.Containers[0].ImagePullPolicy
		}
		assert.Equal(t, "Always", pull(), "the default tag, latest, moves: pulled every time")
		assert.Equal(t, "IfNotPresent", pull("--set", "image.tag=1.0.0"))

		// helm template does not render NOTES.txt, and an install needs a cluster: the template is read.
		notes, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
		require.NoError(t, err)
		assert.Contains(t, string(notes), "{{- if not .Values.stream.create }}")
		assert.Contains(t, string(notes), "must exist before the bridge is ready")
	})

	t.Run("refuses a memory limit it cannot derive GOMEMLIMIT from", func(t *testing.T) {
		cmd := exec.Command(helm, "template", "bridge", chartDir, "--kube-version", kube, "--set", "auth.generateToken=true", "--set", "resources.limits.memory=300M")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "whole number of Mi or Gi")
	})
}

// checkMonitoring checks the ServiceMonitor scrapes the Service's metrics port and the PrometheusRule
// carries every alert of deployments/prometheus/alerts.yaml.
func checkMonitoring(t *testing.T, rendered []byte) {
	t.Helper()
	type object struct {
		Kind     string
		Metadata struct{ Labels map[string]string }
		Spec     struct {
			Selector  struct{ MatchLabels map[string]string } `yaml:"selector"`
			Endpoints []struct{ Port, Path string }
			Groups    []struct {
				Rules []struct{ Alert, Expr string }
			}
		}
	}
	byKind := map[string]object{}
	for _, o := range yamlDocs[object](t, rendered) {
		byKind[o.Kind] = o
	}
	var svc object
	for _, o := range yamlDocs[object](t, rendered) {
		if o.Kind == "Service" && o.Metadata.Labels["app.kubernetes.io/component"] == "metrics" {
			svc = o
		}
	}
	sm, rule := byKind["ServiceMonitor"], byKind["PrometheusRule"]
	require.NotEmpty(t, sm.Kind)
	require.NotEmpty(t, rule.Kind)
	for k, v := range sm.Spec.Selector.MatchLabels {
		assert.Equal(t, v, svc.Metadata.Labels[k], "the ServiceMonitor selects the metrics Service")
	}
	require.Len(t, sm.Spec.Endpoints, 1)
	assert.Equal(t, "metrics", sm.Spec.Endpoints[0].Port)
	assert.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
	assert.Equal(t, "kube-prometheus-stack", sm.Metadata.Labels["release"])

	var want struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	b, err := os.ReadFile(filepath.Join("..", "deployments", "prometheus", "alerts.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &want))
	require.NotEmpty(t, want.Groups)
	assert.Equal(t, want.Groups, rule.Spec.Groups)
}
