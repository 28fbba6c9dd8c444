package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"go.yaml.in/yaml/v3"

	"github.com/natsbridge/acr-nats-bridge/config"
)

// k8sObject holds the fields of the manifests the test reads.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Type           string                      `yaml:"type"`
		ScaleTargetRef struct{ Kind, Name string } `yaml:"scaleTargetRef"`
		MinAvailable   int                         `yaml:"minAvailable"`
		MinReplicas    int                         `yaml:"minReplicas"`
		SecretName     string                      `yaml:"secretName"`
		DNSNames       []string                    `yaml:"dnsNames"`
		Ports          []struct {
			Name       string `yaml:"name"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	ImagePullPolicy string `yaml:"imagePullPolicy"`
	Ports           []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef struct{ Name, Key string } `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe  k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe k8sProbe `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct{ Seconds int } `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type k8sProbe struct {
	HTTPGet struct{ Path, Port, Scheme string } `yaml:"httpGet"`
}

// TestKubernetesManifests parses every Kubernetes manifest and checks it against the bridge: settings it
// knows and accepts, probes on its endpoints, a grace period longer than its shutdown, non-root, and Go's
// memory limit under the container's.
func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "deployments", "kubernetes", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		all = append(append(all, b...), "\n---\n"...)
	}
	objects := k8sObjects(t, all)
	checkWorkload(t, objects)
	// cert-manager's Certificate for HTTPS served by the bridge: a Secret with the tls.crt and tls.key the
	// comment tells the Deployment to mount.
	cert := objects["Certificate"]
	assert.Equal(t, "acr-nats-bridge-tls", cert.Spec.SecretName)
	assert.NotEmpty(t, cert.Spec.DNSNames)
}

// k8sObjects decodes a stream of YAML documents, by kind (one object of each; the metrics Service is
// "MetricsService").
func k8sObjects(t *testing.T, b []byte) map[string]k8sObject {
	t.Helper()
	objects := map[string]k8sObject{}
	for _, o := range yamlDocs[k8sObject](t, b) {
		if o.Kind == "" {
			continue
		}
		kind := o.Kind
		if kind == "Service" && strings.HasSuffix(o.Metadata.Name, "-metrics") {
			kind = "MetricsService" // /metrics apart from the receiver's Service
		}
		require.NotContains(t, objects, kind, "one %s", kind)
		objects[kind] = o
	}
	return objects
}

// yamlDocs decodes every document of a YAML stream into a T.
func yamlDocs[T any](t *testing.T, b []byte) []T {
	t.Helper()
	var out []T
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, v)
	}
}

// checkWorkload checks the Deployment, its Service, PDB and HPA against the bridge. A setting read from a
// Secret that is not among the objects (made ahead by the user) gets a placeholder value.
func checkWorkload(t *testing.T, objects map[string]k8sObject) {
	t.Helper()
	for _, kind := range []string{"Deployment", "Service", "MetricsService", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		require.Contains(t, objects, kind)
	}
	dep := objects["Deployment"]
	pod := dep.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]

	known := configVars()
	secret, haveSecret := objects["Secret"]
	env := map[string]string{}
	goMemLimit := ""
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			goMemLimit = e.Value
			continue
		}
		assert.True(t, known[e.Name], "%s is not a BRIDGE_* setting", e.Name)
		v := e.Value
		if e.ValueFrom != nil {
			ref := e.ValueFrom.SecretKeyRef
			if haveSecret && ref.Name == secret.Metadata.Name {
				require.Contains(t, secret.StringData, ref.Key)
				v = secret.StringData[ref.Key]
			} else {
				require.NotEmpty(t, ref.Name)
				v = "from-secret-" + ref.Name
			}
		}
		assert.NotContains(t, env, e.Name, "%s is set once", e.Name)
		env[e.Name] = v
	}
	for k := range secret.StringData {
		assert.True(t, known[k], "secret key %s is not a BRIDGE_* setting", k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	if strings.HasPrefix(env["BRIDGE_AUTH_TOKENS"], "replace-with") {
		// The raw manifest's placeholder: refused as it is, for anyone can read it; a real token in its place.
		_, err := config.Load(os.LookupEnv)
		require.ErrorContains(t, err, "is a placeholder")
		t.Setenv("BRIDGE_AUTH_TOKENS", "0123456789abcdef0123456789abcdef")
	}
	cfg, err := config.Load(os.LookupEnv)
	require.NoError(t, err, "the Deployment's settings are valid")
	assert.True(t, cfg.AuthEnabled(), "a public bridge authenticates")

	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	receiver := "http"
	if cfg.TLSCertFile != "" {
		receiver = "https" // the port is named for what it serves
	}
	require.Contains(t, ports, receiver)
	assert.Equal(t, ":"+strconv.Itoa(ports[receiver]), cfg.ListenAddr)
	assert.Equal(t, ":"+strconv.Itoa(ports["metrics"]), cfg.MetricsAddr)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Contains(t, ports, c.LivenessProbe.HTTPGet.Port)
	assert.Contains(t, ports, c.ReadinessProbe.HTTPGet.Port)
	wantScheme := ""
	if cfg.TLSCertFile != "" {
		wantScheme = "HTTPS"
	}
	assert.Equal(t, wantScheme, c.LivenessProbe.HTTPGet.Scheme, "probes speak what the listener serves")
	assert.Equal(t, wantScheme, c.ReadinessProbe.HTTPGet.Scheme, "probes speak what the listener serves")
	// The receiver's Service carries the receiver's port alone: /metrics is never published with it.
	require.Len(t, objects["Service"].Spec.Ports, 1)
	assert.Equal(t, receiver, objects["Service"].Spec.Ports[0].TargetPort)
	metricsSvc := objects["MetricsService"]
	assert.Contains(t, []string{"", "ClusterIP"}, metricsSvc.Spec.Type, "metrics inside the cluster only")
	require.Len(t, metricsSvc.Spec.Ports, 1)
	assert.Equal(t, "metrics", metricsSvc.Spec.Ports[0].TargetPort)
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	assert.Greater(t, grace, cfg.ShutdownTimeout+preStop, "Kubernetes waits for the bridge's own shutdown")

	assert.True(t, pod.SecurityContext.RunAsNonRoot)
	assert.NotZero(t, pod.SecurityContext.RunAsUser)
	require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.True(t, c.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, []string{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.NotEmpty(t, c.Resources.Requests["cpu"])
	limit := mebibytes(t, c.Resources.Limits["memory"], "i")
	require.NotEmpty(t, goMemLimit, "the Deployment sets GOMEMLIMIT under its memory limit")
	goLimit := mebibytes(t, goMemLimit, "iB")
	assert.Less(t, goLimit, limit, "Go's memory limit is under the container's")
	assert.Greater(t, goLimit, limit*8/10, "Go's memory limit leaves the container's no more than it needs")

	assert.Equal(t, dep.Spec.Selector.MatchLabels, objects["PodDisruptionBudget"].Spec.Selector.MatchLabels)
	assert.Equal(t, 1, objects["PodDisruptionBudget"].Spec.MinAvailable)
	hpa := objects["HorizontalPodAutoscaler"]
	assert.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
	assert.Equal(t, dep.Metadata.Name, hpa.Spec.ScaleTargetRef.Name)
	assert.GreaterOrEqual(t, hpa.Spec.MinReplicas, 2, "a PDB of minAvailable 1 needs two replicas to let a node drain")
}

// TestStreamDefinition reads the R3 stream definition as JetStream's API does, checks it against what
// the bridge publishes and creates, and has a real nats-server create it (as R1: one server).
func TestStreamDefinition(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deployments", "nats", "stream-acr-events.json"))
	require.NoError(t, err)
	var sc jetstream.StreamConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&sc))

	defaults, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.Equal(t, defaults.Stream, sc.Name)
	assert.Equal(t, []string{defaults.SubjectPrefix + ".>", defaults.PassthroughPrefix + ".>"}, sc.Subjects)
	assert.Equal(t, defaults.StreamDuplicateWindow, sc.Duplicates)
	assert.Equal(t, defaults.StreamMaxAge, sc.MaxAge)
	assert.Equal(t, 3, sc.Replicas)
	assert.Equal(t, jetstream.FileStorage, sc.Storage)
	assert.GreaterOrEqual(t, sc.MaxMsgSize, int32(defaults.EmbeddedNATSMaxPayload))
	assert.True(t, sc.AllowAtomicPublish, "BRIDGE_ATOMIC_BATCHES=true can be turned on without a stream change")

	ns := natstest.Start(t, func(o *server.Options) { o.MaxPayload = 8 << 20 })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	sc.Replicas = 1
	_, err = js.CreateStream(context.Background(), sc)
	require.NoError(t, err)
}

// TestAzureFiles checks the Azure deployment files point Event Grid and ACR at the bridge's endpoints
// with the settings docs/azure.md promises; the script must at least parse.
func TestAzureFiles(t *testing.T) {
	bicep, err := os.ReadFile(filepath.Join("..", "deployments", "azure", "main.bicep"))
	require.NoError(t, err)
	for _, want := range []string{
		"'${bridgeUrl}/eventgrid'", "'${bridgeUrl}/webhooks/acr/${registryName}'", "'CloudEventSchemaV1_0'",
		"azureActiveDirectoryTenantId", "azureActiveDirectoryApplicationIdOrUri", "deliveryAttributeMappings",
		"maxDeliveryAttempts", "deadLetterDestination", "Microsoft.ContainerRegistry/registries/webhooks",
		"'Bearer ${bridgeToken}'", "redrivePrincipalId", "Storage Blob Data Owner",
	} {
		assert.Contains(t, string(bicep), want)
	}
	script := filepath.Join("..", "deployments", "azure", "connect.sh")
	out, err := exec.Command("bash", "-n", script).CombinedOutput()
	require.NoError(t, err, string(out))
	sh, err := os.ReadFile(script)
	require.NoError(t, err)
	for _, want := range []string{`"$url/eventgrid"`, `"$url/webhooks/acr/$registry"`, "cloudeventschemav1_0", "--deadletter-identity-endpoint", "--headers",
		"namespace.bicep", "BRIDGE_NAMESPACE_ENDPOINT=", "BRIDGE_NAMESPACE_TOPIC=", "BRIDGE_NAMESPACE_SUBSCRIPTION=", "BRIDGE_NAMESPACE_KEY=",
		"deadLetterStorageAccountName=", "bridge redrive blobs", "Storage Blob Data Owner"} {
		assert.Contains(t, string(sh), want, fmt.Sprintf("connect.sh: %s", want))
	}

	// The pull route: a namespace topic taking CloudEvents, a queue subscription, the registry's system
	// topic delivering to it with its managed identity in the EventGrid Data Sender role.
	ns, err := os.ReadFile(filepath.Join("..", "deployments", "azure", "namespace.bicep"))
	require.NoError(t, err)
	for _, want := range []string{
		"Microsoft.EventGrid/namespaces@", "Microsoft.EventGrid/namespaces/topics@", "Microsoft.EventGrid/namespaces/topics/eventSubscriptions@",
		"deliveryMode: 'Queue'", "inputSchema: 'CloudEventSchemaV1_0'", "endpointType: 'NamespaceTopic'", "deliveryWithResourceIdentity",
		"identity: {type: 'SystemAssigned'}", "'d5a91429-5739-47e2-a06b-3470a27159e7'", "'78cbd9e7-9798-4e2e-9b5a-547d9ebb31fb'",
		"topicsConfiguration.hostname", "deadLetterDestinationWithResourceIdentity", "deadLetterStorageAccountName", "redrivePrincipalId",
	} {
		assert.Contains(t, string(ns), want, "namespace.bicep: %s", want)
	}

}

// mebibytes reads a whole number of MiB written with the given unit: "256Mi" (Kubernetes) or "230MiB" (Go).
func mebibytes(t *testing.T, s, suffix string) int {
	t.Helper()
	n, ok := strings.CutSuffix(s, suffix)
	require.True(t, ok, "%q ends in %s", s, suffix)
	scale := 1
	switch {
	case strings.HasSuffix(n, "G"):
		scale = 1024
	case !strings.HasSuffix(n, "M"):
		require.Failf(t, "not in Mi or Gi", "%q", s)
	}
	v, err := strconv.Atoi(n[:len(n)-1])
	require.NoError(t, err)
	return v * scale
}
