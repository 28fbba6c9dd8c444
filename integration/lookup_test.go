package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/entra"
	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"github.com/natsbridge/acr-nats-bridge/internal/registrytest"
)

// helmPush packages a chart and pushes it to the registry with Helm's own OCI client, trusting the
// registry's CA, as `helm push chart.tgz oci://...` does.
func helmPush(t *testing.T, r *registrytest.Registry, name, version string) {
	t.Helper()
	helm, _ := buildFromModule(t, "helm.sh/helm/v3", helmVersion, "helm.sh/helm/v3/cmd/helm")
	src := t.TempDir()
	chart := filepath.Join(src, name)
	require.NoError(t, os.MkdirAll(filepath.Join(chart, "templates"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(chart, "Chart.yaml"),
		fmt.Appendf(nil, "apiVersion: v2\nname: %s\nversion: %s\ntype: application\n", name, version), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(chart, "templates", "cm.yaml"),
		[]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"), 0o600))
	home := t.TempDir()
	helmCmd := func(args ...string) {
		cmd := exec.Command(helm, args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
	}
	helmCmd("package", chart)
	user, password := r.Basic()
	if user != "" {
		helmCmd("registry", "login", r.LocalHost, "--username", user, "--password", password, "--ca-file", r.CAFile)
	}
	helmCmd("push", fmt.Sprintf("%s-%s.tgz", name, version), "oci://"+r.LocalHost+"/charts", "--ca-file", r.CAFile)
}

// TestLookupsBinary: the built bridge with lookups required against a real registry behind HTTPS with a
// private CA (SSL_CERT_FILE) and basic authentication. What a release pushes with real clients (a docker
// buildx-shaped multi-arch push, a cosign signature, a Notation signature, an SPDX SBOM, an ORAS artifact,
// and a chart pushed by Helm itself) is delivered as ACR's events in the order of the pushes: each lands
// on its kind's subject, one message on acr.image.pushed.> for the release.
func TestLookupsBinary(t *testing.T) {
	r := registrytest.New(t)
	r.RequireBasic("puller", "pull-secret-0123456789")
	idx := r.PushIndex(t, "team/web", "v1", []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}, true,
		map[string]string{"org.opencontainers.image.source": "https://github.com/example/web"})
	r.PushCosignSignature(t, "team/web", idx)
	r.PushReferrer(t, "team/web", idx, registrytest.NotarySignature, "application/jose+json", []byte(`{}`))
	r.PushReferrer(t, "team/web", idx, registrytest.SPDX, registrytest.SPDX, []byte(`{"spdxVersion":"SPDX-2.3"}`))
	r.PushArtifact(t, "team/docs", "v1", "application/vnd.example.docs.v1", nil)
	helmPush(t, r, "web", "0.1.0")
	pushes := r.Pushes()
	// Helm puts its chart's manifest by digest, then by tag: two events, and both are the chart (DESIGN §4:
	// Helm's config makes a chart, tagged or not).
	want := []string{"manifest", "manifest", "manifest", "manifest", "image", "signature", "signature", "sbom", "artifact", "chart", "chart"}
	require.Len(t, pushes, len(want))

	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p, url := bridgeProcess(t, "BRIDGE_EMBEDDED_NATS_ADDR="+natsAddr, "BRIDGE_EMBEDDED_NATS_DIR="+dir, "SSL_CERT_FILE="+r.CAFile,
		"BRIDGE_REGISTRY_LOOKUP=required", "BRIDGE_REGISTRY_HOSTS="+r.LocalHost, "BRIDGE_REGISTRY_AUTH=basic",
		"BRIDGE_REGISTRY_USERNAME=puller", "BRIDGE_REGISTRY_PASSWORD=pull-secret-0123456789", "BRIDGE_LOG_LEVEL=debug")
	var events []map[string]any
	for i, push := range pushes {
		events = append(events, push.EventGrid(fmt.Sprintf("eg-%d", i), "myregistry", r.LocalHost))
	}
	resp, err := http.Post(url+"/eventgrid", "application/json", strings.NewReader(string(registrytest.Batch(events...))))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	msgs := natstest.StoredAt(t, "nats://"+natsAddr, "ACR_EVENTS")
	require.Len(t, msgs, len(want))
	images := 0
	for i, m := range msgs {
		env, err := acrevent.DecodeEnvelope(m.Header, m.Data)
		require.NoError(t, err)
		a := env.Data.Artifact
		assert.Equal(t, want[i], a.Kind, "%s %s", pushes[i].Repository, pushes[i].Tag)
		assert.Equal(t, acrevent.LookupOK, a.Lookup)
		assert.True(t, strings.HasPrefix(m.Subject, "acr."+want[i]+".pushed.myregistry."), m.Subject)
		if strings.HasPrefix(m.Subject, "acr.image.pushed.") {
			images++
			assert.Len(t, a.Platforms, 4)
			assert.Equal(t, "https://github.com/example/web", a.Annotations["org.opencontainers.image.source"])
		}
		t.Logf("%-60s %s", m.Subject, env.Subject)
	}
	assert.Equal(t, 1, images, "one message on acr.image.pushed.> for the release")
	assert.Equal(t, "acr.chart.pushed.myregistry.charts.web", msgs[10].Subject, "pushed by helm")
	assert.Empty(t, pushes[9].Tag)
	assert.Equal(t, "0.1.0", pushes[10].Tag)

	resp, err = http.Get(url + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(metrics), fmt.Sprintf(`bridge_registry_lookups_total{result="ok"} %d`, len(want)))
	assert.Contains(t, string(metrics), `bridge_registry_lookup_cache_hits_total 0`)
	assert.NotContains(t, p.out.String(), "pull-secret-0123456789", "no secret reaches a log")
}

// TestLookupsBinaryEntra: the built bridge with BRIDGE_REGISTRY_AUTH=entra gets a Microsoft Entra token
// through the Azure SDK's default credential chain (its environment credential, against a stand-in
// tenant), exchanges it at the registry for ACR's refresh token once, and looks the pushes up with it.
// A secret the tenant refuses fails the lookups; best-effort publishes with the event's kind.
func TestLookupsBinaryEntra(t *testing.T) {
	r := registrytest.New(t)
	img := r.PushImage(t, "team/web", "v1", nil)
	r.PushReferrer(t, "team/web", img, registrytest.NotarySignature, "application/jose+json", []byte(`{}`))
	pushes := r.Pushes()
	tenant := entratest.New(t)
	authority := tenant.Authority(t, "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f", "a-client-secret-for-tests")
	verifier, err := entra.New(context.Background(), entra.Config{TenantID: entratest.TenantID, Audiences: []string{"https://containerregistry.azure.net"},
		KeysURL: tenant.KeysURL, Refresh: time.Hour, MinRefresh: time.Second}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	exchanges := r.RequireACRToken(func(ctx context.Context, token string) error {
		_, err := verifier.Verify(ctx, token)
		return err
	})
	// One bundle trusts the registry's CA and the tenant's, as SSL_CERT_FILE would a private CA.
	bundle := certBundle(t, r.CAFile, authority.CertFile)

	for _, tc := range []struct {
		secret string
		kind   string
		lookup string
	}{
		{authority.ClientSecret, "signature", acrevent.LookupOK},
		{"not-the-secret-of-this-app", "manifest", acrevent.LookupFailed},
	} {
		t.Run(tc.lookup, func(t *testing.T) {
			natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			p, url := bridgeProcess(t, "BRIDGE_EMBEDDED_NATS_ADDR="+natsAddr, "BRIDGE_EMBEDDED_NATS_DIR="+t.TempDir(), "SSL_CERT_FILE="+bundle,
				"BRIDGE_REGISTRY_LOOKUP=best-effort", "BRIDGE_REGISTRY_HOSTS="+r.LocalHost, "BRIDGE_REGISTRY_LOOKUP_TIMEOUT=5s",
				"AZURE_AUTHORITY_HOST="+authority.URL, "AZURE_TENANT_ID="+entratest.TenantID,
				"AZURE_CLIENT_ID="+authority.ClientID, "AZURE_CLIENT_SECRET="+tc.secret)
			before := exchanges.Load()
			for i, push := range pushes {
				resp, err := http.Post(url+"/webhooks/acr/myregistry", "application/json", strings.NewReader(string(push.Webhook(fmt.Sprintf("wh-%d", i), r.LocalHost))))
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
			}
			msgs := natstest.StoredAt(t, "nats://"+natsAddr, "ACR_EVENTS")
			require.Len(t, msgs, 2)
			env, err := acrevent.DecodeEnvelope(msgs[1].Header, msgs[1].Data)
			require.NoError(t, err)
			assert.Equal(t, tc.kind, env.Data.Artifact.Kind, "%s", p.out)
			assert.Equal(t, tc.lookup, env.Data.Artifact.Lookup)
			if tc.lookup == acrevent.LookupOK {
				assert.Equal(t, before+1, exchanges.Load(), "one exchange for both lookups")
			} else {
				assert.Equal(t, before, exchanges.Load())
				assert.Contains(t, p.out.String(), "registry lookup failed")
				assert.NotContains(t, p.out.String(), tc.secret)
			}
		})
	}
}
