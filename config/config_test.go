package config_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/config"
)

func TestDefaults(t *testing.T) {
	c, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.Equal(t, ":8080", c.ListenAddr)
	assert.Equal(t, "acr", c.SubjectPrefix)
	assert.Equal(t, "eventgrid", c.PassthroughPrefix)
	assert.Equal(t, "ACR_EVENTS", c.Stream)
	assert.True(t, c.StreamCreate)
	assert.Equal(t, 10*time.Minute, c.StreamDuplicateWindow)
	assert.Equal(t, 168*time.Hour, c.StreamMaxAge)
	assert.Equal(t, 1, c.StreamReplicas)
	assert.Equal(t, "127.0.0.1:4222", c.EmbeddedNATSAddr)
	assert.Equal(t, "./data/nats", c.EmbeddedNATSDir)
	assert.Equal(t, "always", c.EmbeddedNATSSync, "a 200 survives a power cut unless asked otherwise")
	sync, err := c.EmbeddedNATSSyncInterval()
	require.NoError(t, err)
	assert.Zero(t, sync)
	assert.Equal(t, "auto", c.AtomicBatches)
	assert.Equal(t, "always", c.AtomicBatchPolicy(), "the embedded server syncs always, so batches pay")
	assert.Equal(t, []string{"eventgrid.azure.net"}, c.AllowedOrigins)
	assert.Equal(t, 5000, c.MaxEvents)
	assert.Equal(t, "structured", c.CEMode)
	assert.Equal(t, "jetstream", c.NATSMode)
	assert.Empty(t, c.NATSURL)
	assert.Less(t, c.PublishTimeout, 30*time.Second, "answer before Event Grid gives up")
}

func TestLoadNamesTheVariable(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"BRIDGE_MAX_EVENTS", "many", "BRIDGE_MAX_EVENTS"},
		{"BRIDGE_MAX_EVENTS", "0", "BRIDGE_MAX_EVENTS: must be positive"},
		{"BRIDGE_MAX_INFLIGHT_BYTES", "1048576", "BRIDGE_MAX_INFLIGHT_BYTES: 1048576 is less than BRIDGE_MAX_BODY_BYTES"},
		{"BRIDGE_PUBLISH_TIMEOUT", "soon", "BRIDGE_PUBLISH_TIMEOUT"},
		{"BRIDGE_PUBLISH_TIMEOUT", "40s", "shorter than BRIDGE_WRITE_TIMEOUT"},
		{"BRIDGE_STREAM_CREATE", "maybe", "BRIDGE_STREAM_CREATE"},
		{"BRIDGE_CE_MODE", "xml", "BRIDGE_CE_MODE"},
		{"BRIDGE_NATS_MODE", "kafka", "BRIDGE_NATS_MODE"},
		{"BRIDGE_SUBJECT_PREFIX", "acr.>", "BRIDGE_SUBJECT_PREFIX"},
		{"BRIDGE_SUBJECT_PREFIX", "", "BRIDGE_SUBJECT_PREFIX"},
		{"BRIDGE_PASSTHROUGH_PREFIX", "acr", "overlaps"},
		{"BRIDGE_STREAM", "ACR.EVENTS", "BRIDGE_STREAM"},
		{"BRIDGE_STREAM_REPLICAS", "7", "BRIDGE_STREAM_REPLICAS"},
		{"BRIDGE_STREAM_DUPLICATE_WINDOW", "200h", "longer than BRIDGE_STREAM_MAX_AGE"},
		{"BRIDGE_LISTEN_ADDR", "8080", "BRIDGE_LISTEN_ADDR"},
		{"BRIDGE_EMBEDDED_NATS_ADDR", "127.0.0.1:99999", "BRIDGE_EMBEDDED_NATS_ADDR"},
		{"BRIDGE_EMBEDDED_NATS_SYNC", "never", `BRIDGE_EMBEDDED_NATS_SYNC: "never" is neither always nor a positive duration`},
		{"BRIDGE_EMBEDDED_NATS_SYNC", "0s", "BRIDGE_EMBEDDED_NATS_SYNC"},
		{"BRIDGE_EMBEDDED_NATS_SYNC", "Always", "BRIDGE_EMBEDDED_NATS_SYNC"},
		{"BRIDGE_NAMESPACE_ENDPOINT", "https://ns.westus-1.eventgrid.azure.net", "BRIDGE_NAMESPACE_TOPIC and BRIDGE_NAMESPACE_SUBSCRIPTION go together (1 of 3 set)"},
		{"BRIDGE_NAMESPACE_TOPIC", "acr-events", "go together (1 of 3 set)"},
		{"BRIDGE_NAMESPACE_MAX_EVENTS", "101", "BRIDGE_NAMESPACE_MAX_EVENTS: must be 1 to 100"},
		{"BRIDGE_NAMESPACE_MAX_WAIT", "5s", "BRIDGE_NAMESPACE_MAX_WAIT: must be whole seconds from 10s to 120s"},
		{"BRIDGE_NAMESPACE_RELEASE_DELAY", "30s", "BRIDGE_NAMESPACE_RELEASE_DELAY: 30s is not one of"},
		{"BRIDGE_NAMESPACE_RECEIVERS", "0", "BRIDGE_NAMESPACE_RECEIVERS"},
		{"BRIDGE_TLS_CERT_FILE", "/etc/bridge/tls.crt", "BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE go together"},
		{"BRIDGE_TLS_KEY_FILE", "/etc/bridge/tls.key", "BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE go together"},
		{"BRIDGE_ACME_DOMAINS", "*.example.com", "is not a DNS name"},
		{"BRIDGE_ACME_EMAIL", "ops@example.com", "BRIDGE_ACME_EMAIL: set without BRIDGE_ACME_DOMAINS"},
		{"BRIDGE_TLS_RELOAD_INTERVAL", "1m", "BRIDGE_TLS_RELOAD_INTERVAL: must be more than 0s and at most 30s"},
		{"BRIDGE_ATOMIC_BATCHES", "sometimes", `BRIDGE_ATOMIC_BATCHES: "sometimes" is not one of auto, true, false`},
		{"BRIDGE_LOG_LEVEL", "loud", "BRIDGE_LOG_LEVEL"},
		{"BRIDGE_LOG_FORMAT", "xml", "BRIDGE_LOG_FORMAT"},
		{"BRIDGE_NATS_USER", "me", "BRIDGE_NATS_PASSWORD go together"},
		{"BRIDGE_NATS_TOKEN", "s3cret", "BRIDGE_NATS_URL is empty"},
		{"BRIDGE_WRITE_TIMEOUT", "30s", "not under 30s"},
		{"BRIDGE_IDLE_TIMEOUT", "0s", "BRIDGE_IDLE_TIMEOUT: must be positive"},
		{"BRIDGE_MAX_JSON_DEPTH", "2", "BRIDGE_MAX_JSON_DEPTH: must be 4 to 10000"},
		{"BRIDGE_AUTH_TOKENS", "s3cret", "BRIDGE_AUTH_TOKENS: token 1 of 1 is 6 characters long"},
		{"BRIDGE_AUTH_TOKENS", "0123456789abcdef0123,s3cret-s3cret-s3cret\tx", "token 2 of 2 contains a space or control character"},
		{"BRIDGE_AUTH_QUERY_PARAM", "a b", "BRIDGE_AUTH_QUERY_PARAM"},
		{"BRIDGE_ENTRA_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47", "BRIDGE_ENTRA_AUDIENCE go together"},
		{"BRIDGE_ENTRA_AUDIENCE", "api://bridge", "BRIDGE_ENTRA_AUDIENCE go together"},
		{"BRIDGE_ENTRA_TENANT_ID", "contoso.onmicrosoft.com", "is not a tenant id"},
		{"BRIDGE_ENTRA_JWKS_URL", "http://keys.example.com/keys", "is not https"},
		{"BRIDGE_ENTRA_JWKS_URL", "keys", "not an absolute URL"},
		{"BRIDGE_ENTRA_CLOCK_SKEW", "1h", "must be 0 to 10m"},
		{"BRIDGE_ENTRA_KEYS_MIN_REFRESH", "2h", "longer than BRIDGE_ENTRA_KEYS_REFRESH"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := config.Load(os.LookupEnv)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cret", "an error never echoes a secret")
		})
	}
}

func TestEmbeddedNATSSyncInterval(t *testing.T) {
	t.Setenv("BRIDGE_EMBEDDED_NATS_SYNC", "2m")
	c, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	sync, err := c.EmbeddedNATSSyncInterval()
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, sync)
}

func TestAtomicBatchPolicy(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "always"},
		{map[string]string{"BRIDGE_EMBEDDED_NATS_SYNC": "2m"}, "replicated"},
		{map[string]string{"BRIDGE_NATS_URL": "nats://nats:4222"}, "replicated"},
		{map[string]string{"BRIDGE_NATS_URL": "nats://nats:4222", "BRIDGE_ATOMIC_BATCHES": "true"}, "always"},
		{map[string]string{"BRIDGE_EMBEDDED_NATS_SYNC": "2m", "BRIDGE_ATOMIC_BATCHES": "true"}, "always"},
		{map[string]string{"BRIDGE_ATOMIC_BATCHES": "false"}, "never"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := config.Load(os.LookupEnv)
			require.NoError(t, err)
			assert.Equal(t, tc.want, c.AtomicBatchPolicy())
		})
	}
}

func TestNamespaceSettings(t *testing.T) {
	c, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.False(t, c.NamespaceEnabled(), "no pulling by default")
	assert.Equal(t, 2, c.NamespaceReceivers)
	assert.Equal(t, 100, c.NamespaceMaxEvents)
	assert.Equal(t, 60*time.Second, c.NamespaceMaxWait)
	assert.Equal(t, 10*time.Second, c.NamespaceReleaseDelay)

	t.Setenv("BRIDGE_NAMESPACE_ENDPOINT", "http://ns.westus-1.eventgrid.azure.net")
	t.Setenv("BRIDGE_NAMESPACE_TOPIC", "acr-events")
	t.Setenv("BRIDGE_NAMESPACE_SUBSCRIPTION", "bridge")
	_, err = config.Load(os.LookupEnv)
	require.ErrorContains(t, err, "BRIDGE_NAMESPACE_ENDPOINT: \"http://ns.westus-1.eventgrid.azure.net\" is not an https URL")

	t.Setenv("BRIDGE_NAMESPACE_ENDPOINT", "https://ns.westus-1.eventgrid.azure.net")
	t.Setenv("BRIDGE_NAMESPACE_RELEASE_DELAY", "1h")
	c, err = config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.True(t, c.NamespaceEnabled())
	assert.Equal(t, time.Hour, c.NamespaceReleaseDelay)
}

func TestRegistryLookupSettings(t *testing.T) {
	t.Parallel()
	load := func(env map[string]string) (config.Config, error) {
		return config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	c, err := load(nil)
	require.NoError(t, err)
	assert.False(t, c.LookupsEnabled(), "off by default")
	assert.Equal(t, []string{"*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"}, c.RegistryHosts)
	assert.Equal(t, "entra", c.RegistryAuth)
	assert.Equal(t, 2*time.Second, c.RegistryLookupTimeout)

	for env, want := range map[*map[string]string]string{
		{"BRIDGE_REGISTRY_LOOKUP": "on"}:                                                `BRIDGE_REGISTRY_LOOKUP: "on" is not one of off, best-effort, required`,
		{"BRIDGE_REGISTRY_AUTH": "token"}:                                               `BRIDGE_REGISTRY_AUTH: "token" is not one of entra, basic, anonymous`,
		{"BRIDGE_REGISTRY_HOSTS": "https://myregistry.azurecr.io"}:                      "BRIDGE_REGISTRY_HOSTS: ",
		{"BRIDGE_REGISTRY_HOSTS": "*"}:                                                  "BRIDGE_REGISTRY_HOSTS: ",
		{"BRIDGE_REGISTRY_AUTH": "basic", "BRIDGE_REGISTRY_USERNAME": "u"}:              "BRIDGE_REGISTRY_AUTH: basic goes with BRIDGE_REGISTRY_USERNAME and BRIDGE_REGISTRY_PASSWORD",
		{"BRIDGE_REGISTRY_PASSWORD": "pull-secret-0123456789"}:                          "BRIDGE_REGISTRY_AUTH: basic goes with",
		{"BRIDGE_REGISTRY_LOOKUP_CONCURRENCY": "0"}:                                     "BRIDGE_REGISTRY_LOOKUP_CONCURRENCY: must be 1 to 1024, got 0",
		{"BRIDGE_REGISTRY_LOOKUP_TIMEOUT": "0s"}:                                        "BRIDGE_REGISTRY_LOOKUP_TIMEOUT: must be positive",
		{"BRIDGE_REGISTRY_LOOKUP": "required", "BRIDGE_REGISTRY_LOOKUP_TIMEOUT": "20s"}: "BRIDGE_REGISTRY_LOOKUP_TIMEOUT: 20s and BRIDGE_PUBLISH_TIMEOUT 10s together must be shorter than BRIDGE_WRITE_TIMEOUT 25s",
	} {
		_, err := load(*env)
		require.Error(t, err, *env)
		assert.Contains(t, err.Error(), want, *env)
		assert.NotContains(t, err.Error(), "pull-secret-0123456789", "an error never echoes a secret")
	}

	c, err = load(map[string]string{"BRIDGE_REGISTRY_LOOKUP": "required", "BRIDGE_REGISTRY_AUTH": "basic", "BRIDGE_REGISTRY_USERNAME": "bridge",
		"BRIDGE_REGISTRY_PASSWORD": "pull-secret-0123456789", "BRIDGE_REGISTRY_HOSTS": "myregistry.azurecr.io,registry.internal:5443"})
	require.NoError(t, err)
	assert.True(t, c.LookupsEnabled())
	assert.Equal(t, []string{"myregistry.azurecr.io", "registry.internal:5443"}, c.RegistryHosts)
}

func TestTLSSettings(t *testing.T) {
	c, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.False(t, c.TLSFiles())
	assert.False(t, c.ACMEEnabled(), "plain HTTP by default")
	assert.Equal(t, "https://acme-v02.api.letsencrypt.org/directory", c.ACMECA)
	assert.Equal(t, "./data/acme", c.ACMECacheDir)

	t.Setenv("BRIDGE_TLS_CERT_FILE", "/etc/bridge/tls.crt")
	t.Setenv("BRIDGE_TLS_KEY_FILE", "/etc/bridge/tls.key")
	c, err = config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.True(t, c.TLSFiles())

	t.Setenv("BRIDGE_ACME_DOMAINS", "bridge.example.com")
	_, err = config.Load(os.LookupEnv)
	require.ErrorContains(t, err, "BRIDGE_ACME_DOMAINS: BRIDGE_ACME_DOMAINS and BRIDGE_TLS_CERT_FILE/BRIDGE_TLS_KEY_FILE are two ways to get a certificate; set one")

	t.Setenv("BRIDGE_TLS_CERT_FILE", "")
	t.Setenv("BRIDGE_TLS_KEY_FILE", "")
	t.Setenv("BRIDGE_ACME_CA", "http://acme.example.com/dir")
	_, err = config.Load(os.LookupEnv)
	require.ErrorContains(t, err, "BRIDGE_ACME_CA")

	t.Setenv("BRIDGE_ACME_CA", "https://127.0.0.1:14000/dir")
	c, err = config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.True(t, c.ACMEEnabled())
	assert.Equal(t, []string{"bridge.example.com"}, c.ACMEDomains)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Setenv("BRIDGE_CE_MODE", "xml")
	t.Setenv("BRIDGE_NATS_MODE", "kafka")
	_, err := config.Load(os.LookupEnv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BRIDGE_CE_MODE")
	assert.Contains(t, err.Error(), "BRIDGE_NATS_MODE")
}

// Usage lists every variable of Config with its default, so bridge -h documents them all.
func TestUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, config.Usage(&buf))
	out := buf.String()
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := "BRIDGE_" + f.Tag.Get("envconfig")
		assert.Contains(t, out, name)
		line := lineWith(out, name+" ")
		assert.Contains(t, line, f.Tag.Get("desc"), name)
		if d := f.Tag.Get("default"); d != "" {
			assert.Contains(t, line, d, name)
		}
	}
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// docs/configuration.md is what the configuration code writes: a variable added, renamed or described
// differently fails here until "go generate ./config" is run.
func TestConfigurationReferenceIsCurrent(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, config.WriteReference(&b))
	doc, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	require.NoError(t, err)
	assert.Equal(t, b.String(), string(doc), "docs/configuration.md is stale: run go generate ./config")

	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		assert.NotEmpty(t, f.Tag.Get("desc"), "BRIDGE_%s has no description", f.Tag.Get("envconfig"))
		line := lineWith(b.String(), "| `BRIDGE_"+f.Tag.Get("envconfig")+"` |")
		require.NotEmpty(t, line, "no row for BRIDGE_%s", f.Tag.Get("envconfig"))
		if d := f.Tag.Get("default"); d != "" {
			assert.Contains(t, line, "`"+d+"`")
		}
	}
}

func TestAuthSettings(t *testing.T) {
	c, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.False(t, c.AuthEnabled(), "no authentication by default")
	assert.Equal(t, "access_token", c.AuthQueryParam)

	t.Setenv("BRIDGE_AUTH_TOKENS", "0123456789abcdef-one,0123456789abcdef-two")
	t.Setenv("BRIDGE_ENTRA_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
	t.Setenv("BRIDGE_ENTRA_AUDIENCE", "api://bridge,0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f")
	c, err = config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.True(t, c.AuthEnabled())
	assert.Equal(t, []string{"0123456789abcdef-one", "0123456789abcdef-two"}, c.AuthTokens)
	assert.Equal(t, []string{"api://bridge", "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f"}, c.EntraAudience)
	assert.Equal(t, "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/v2.0/keys", c.EntraKeysURL())

	t.Setenv("BRIDGE_ENTRA_JWKS_URL", "http://127.0.0.1:9999/keys")
	c, err = config.Load(os.LookupEnv)
	require.NoError(t, err, "plain http is fine on loopback")
	assert.Equal(t, "http://127.0.0.1:9999/keys", c.EntraKeysURL())

	t.Setenv("BRIDGE_AUTH_QUERY_PARAM", "")
	c, err = config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.Empty(t, c.AuthQueryParam, "set but empty turns the query parameter off")
}

// Every setting that is not free text, set to a value of the wrong type, stops start-up with an error
// that names the variable as the user wrote it.
func TestEveryParseErrorNamesItsVariable(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[config.Config]()
	checked := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.String || f.Type.Kind() == reflect.Slice {
			continue // any text is a string; a list is any text split on commas
		}
		name := config.Prefix + "_" + f.Tag.Get("envconfig")
		checked++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(func(k string) (string, bool) {
				if k == name {
					return "not-a-value", true
				}
				return "", false
			})
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), name+`="not-a-value": `), err.Error())
		})
	}
	assert.Greater(t, checked, 20, "the bool, number and duration settings")
}

// A variable set to the empty string is set: its default does not apply.
func TestEmptyIsNotUnset(t *testing.T) {
	t.Parallel()
	c, err := config.Load(func(k string) (string, bool) { return "", k == "BRIDGE_ALLOWED_ORIGINS" })
	require.NoError(t, err)
	assert.Empty(t, c.AllowedOrigins)
	c, err = config.Load(func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	assert.Equal(t, []string{"eventgrid.azure.net"}, c.AllowedOrigins)
}

// A typo in a variable's name is a warning with the setting meant; an empty BRIDGE_AUTH_TOKENS is an error.
func TestUnknownVariablesAndEmptyTokens(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []string{
		"BRIDGE_LISTEN_ADRR is not a setting and is ignored; did you mean BRIDGE_LISTEN_ADDR?",
		"BRIDGE_AUTH_TOKEN is not a setting and is ignored; did you mean BRIDGE_AUTH_TOKENS?",
		"BRIDGE_WHATEVER_THIS_IS is not a setting and is ignored (bridge -h lists them)",
	}, config.UnknownVariables([]string{"BRIDGE_LISTEN_ADRR", "BRIDGE_LISTEN_ADDR", "PATH", "BRIDGE_AUTH_TOKEN", "BRIDGE_WHATEVER_THIS_IS", "NOT_BRIDGE_X"}))
	assert.Empty(t, config.UnknownVariables(config.Names()))

	for _, empty := range []string{"", " "} {
		_, err := config.Load(func(k string) (string, bool) { return empty, k == "BRIDGE_AUTH_TOKENS" })
		require.Error(t, err, "%q", empty)
		assert.Contains(t, err.Error(), "BRIDGE_AUTH_TOKENS is set but holds no token")
	}
	_, err := config.Load(func(k string) (string, bool) { return " , ", k == "BRIDGE_AUTH_TOKENS" })
	require.ErrorContains(t, err, "BRIDGE_AUTH_TOKENS: token 1 of 2 is", "empty tokens in a list are short tokens")
}

// The placeholder token of the raw manifest is refused: it is in the repository for anyone to read.
func TestPlaceholderTokenRefused(t *testing.T) {
	t.Parallel()
	manifest, err := os.ReadFile(filepath.Join("..", "deployments", "kubernetes", "bridge.yaml"))
	require.NoError(t, err)
	m := regexp.MustCompile(`BRIDGE_AUTH_TOKENS: "([^"]+)"`).FindSubmatch(manifest)
	require.NotNil(t, m, "the manifest's Secret holds a placeholder")
	_, err = config.Load(func(k string) (string, bool) {
		return "0123456789abcdef0123," + string(m[1]), k == "BRIDGE_AUTH_TOKENS"
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BRIDGE_AUTH_TOKENS: token 2 of 2 is a placeholder")
}
