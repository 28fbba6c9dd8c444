package integration

import (
	"bufio"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"

	"github.com/natsbridge/acr-nats-bridge/config"
)

// configVars are the names of every BRIDGE_* variable the bridge reads.
func configVars() map[string]bool {
	vars := map[string]bool{}
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		vars[config.Prefix+"_"+typ.Field(i).Tag.Get("envconfig")] = true
	}
	return vars
}

// TestComposeFile loads docker-compose.yml with the compose-spec loader, as `docker compose` does, and
// checks what `docker compose up` would run.
func TestComposeFile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yml")},
		cli.WithWorkingDirectory(".."), cli.WithOsEnv)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	require.Equal(t, "acr-nats-bridge", p.Name)

	nats, err := p.GetService("nats")
	require.NoError(t, err)
	bridge, err := p.GetService("bridge")
	require.NoError(t, err)
	consumer, err := p.GetService("consumer")
	require.NoError(t, err)

	// NATS: JetStream config mounted, data on a named volume, a health check of JetStream itself.
	assert.Equal(t, []string{"-c", "/etc/nats/nats.conf"}, []string(nats.Command))
	var mountsConf, mountsData bool
	for _, v := range nats.Volumes {
		mountsConf = mountsConf || (v.Target == "/etc/nats/nats.conf" && strings.HasSuffix(v.Source, filepath.Join("deployments", "nats", "nats.conf")))
		mountsData = mountsData || (v.Type == "volume" && v.Source == "nats-data" && v.Target == "/data")
	}
	assert.True(t, mountsConf, "nats.conf mounted")
	assert.True(t, mountsData, "JetStream data on the named volume")
	assert.Contains(t, p.Volumes, "nats-data")
	require.NotNil(t, nats.HealthCheck)
	assert.Contains(t, strings.Join(nats.HealthCheck.Test, " "), "/healthz?js-enabled-only=true")

	// The bridge: built from this repository, published on 8080, configured only with variables it
	// knows, healthy only when /readyz is, started after NATS is healthy.
	require.NotNil(t, bridge.Build)
	assert.Equal(t, filepath.Clean(filepath.Join("..")), filepath.Clean(relTo(t, bridge.Build.Context)))
	require.Len(t, bridge.Ports, 1)
	assert.Equal(t, uint32(8080), bridge.Ports[0].Target)
	assert.Equal(t, "8080", bridge.Ports[0].Published)
	assert.Equal(t, "127.0.0.1", bridge.Ports[0].HostIP, "published on this machine only: no token is set")
	require.Len(t, bridge.EnvFiles, 1)
	assert.False(t, bool(bridge.EnvFiles[0].Required), "bridge.env, where a token goes, is optional")
	known := configVars()
	for name := range bridge.Environment {
		assert.True(t, known[name] || strings.HasPrefix(name, "OTEL_"), "bridge environment %s is neither a BRIDGE_* setting nor OpenTelemetry's", name)
	}
	assert.Equal(t, "nats://nats:4222", *bridge.Environment["BRIDGE_NATS_URL"])
	assert.Equal(t, "none", *bridge.Environment["OTEL_TRACES_EXPORTER"], "tracing off unless asked for")
	require.NotNil(t, bridge.HealthCheck)
	assert.Equal(t, []string{"CMD", "/bridge", "healthcheck"}, []string(bridge.HealthCheck.Test))
	assert.Equal(t, "service_healthy", bridge.DependsOn["nats"].Condition)

	// The demo consumer: the bridge binary's tail, with a durable consumer, once the bridge (and so
	// the stream) is up.
	assert.Equal(t, "tail", consumer.Command[0])
	assert.Contains(t, []string(consumer.Command), "--durable")
	assert.Equal(t, "service_healthy", consumer.DependsOn["bridge"].Condition)
	for name := range consumer.Environment {
		assert.True(t, known[name] || strings.HasPrefix(name, "OTEL_"), "consumer environment %s is neither a BRIDGE_* setting nor OpenTelemetry's", name)
	}

	// The tracing profile: a Jaeger that takes OTLP/HTTP where the bridge and the consumer send it.
	tracingOpts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yml")},
		cli.WithWorkingDirectory(".."), cli.WithOsEnv, cli.WithProfiles([]string{"tracing"}))
	require.NoError(t, err)
	tp, err := tracingOpts.LoadProject(context.Background())
	require.NoError(t, err)
	jaeger, err := tp.GetService("jaeger")
	require.NoError(t, err)
	assert.Contains(t, jaeger.Image, "jaeger")
	assert.Equal(t, "http://jaeger:4318", *bridge.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])

	// The environment compose gives the bridge is a valid configuration.
	for name, v := range bridge.Environment {
		if v != nil {
			t.Setenv(name, *v)
		}
	}
	cfg, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.False(t, cfg.AuthEnabled(), "no token unless bridge.env gives one")
	assert.Equal(t, ":8080", cfg.ListenAddr, "set explicitly: every interface of the container")
	assert.Equal(t, "always", cfg.AtomicBatchPolicy(), "its NATS syncs every write, where atomic batches pay")
}

// docker-compose.tls.yml, merged over docker-compose.yml as `docker compose -f ... -f ...` does, serves
// HTTPS from mounted certificate files with settings the bridge knows, and checks health over HTTPS.
func TestComposeTLSOverride(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yml"), filepath.Join("..", "docker-compose.tls.yml")},
		cli.WithWorkingDirectory(".."), cli.WithOsEnv)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	bridge, err := p.GetService("bridge")
	require.NoError(t, err)
	known := configVars()
	for name := range bridge.Environment {
		assert.True(t, known[name] || strings.HasPrefix(name, "OTEL_"), "bridge environment %s is neither a BRIDGE_* setting nor OpenTelemetry's", name)
	}
	assert.Equal(t, "/certs/tls.crt", *bridge.Environment["BRIDGE_TLS_CERT_FILE"])
	assert.Equal(t, "/certs/tls.key", *bridge.Environment["BRIDGE_TLS_KEY_FILE"])
	var mountsCerts bool
	for _, v := range bridge.Volumes {
		mountsCerts = mountsCerts || (v.Target == "/certs" && v.ReadOnly)
	}
	assert.True(t, mountsCerts, "the certificates mounted read-only")
	require.Len(t, bridge.Ports, 1, "the plain port replaced, not added to")
	assert.Equal(t, uint32(8443), bridge.Ports[0].Target)
	assert.Contains(t, bridge.HealthCheck.Test, "https://127.0.0.1:8443/readyz")
	for name, v := range bridge.Environment {
		if v != nil {
			t.Setenv(name, *v)
		}
	}
	cfg, err := config.Load(os.LookupEnv)
	require.NoError(t, err)
	assert.True(t, cfg.TLSFiles())
}

func relTo(t *testing.T, path string) string {
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, path)
	require.NoError(t, err)
	return rel
}

// The NATS configuration of the compose file is one nats-server accepts, with JetStream on, a max
// payload above Event Grid's 1 MB event, and every write synced before its PubAck: that one server is
// the only copy of what the bridge answered 200 for. A server started from it runs with that policy.
func TestNATSConfig(t *testing.T) {
	opts, err := server.ProcessConfigFile(filepath.Join("..", "deployments", "nats", "nats.conf"))
	require.NoError(t, err)
	assert.True(t, opts.JetStream)
	assert.Greater(t, opts.MaxPayload, int32(1<<20))
	assert.Equal(t, "/data", opts.StoreDir)
	assert.True(t, opts.SyncAlways, "nats.conf syncs every write (jetstream { sync_interval: always })")

	opts.StoreDir, opts.Host, opts.Port, opts.HTTPPort, opts.NoLog, opts.NoSigs = t.TempDir(), "127.0.0.1", server.RANDOM_PORT, 0, true, true
	ns := natstest.Run(t, opts)
	require.NotNil(t, ns.JetStreamConfig())
	assert.True(t, ns.JetStreamConfig().SyncAlways, "the server runs with sync always")
}

// The compose file's NATS is the release the tests run against (go.mod's nats-server), which stores an
// atomic batch with one sync.
func TestComposeNATSVersion(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yml")},
		cli.WithWorkingDirectory(".."), cli.WithOsEnv)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	nats, err := p.GetService("nats")
	require.NoError(t, err)
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\d+\.\d+)\.`).FindSubmatch(gomod)
	require.NotNil(t, m, "go.mod requires nats-server")
	assert.Equal(t, "nats:"+string(m[1])+"-alpine", nats.Image)
}

// TestDockerBuildCommand runs the Dockerfile's own `go build` line, so that the image build cannot break
// unnoticed where no Docker engine runs, and checks that it makes a static binary for a non-root,
// distroless image.
func TestDockerBuildCommand(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	var build, user string
	var froms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build"):
			build = strings.TrimPrefix(line, "RUN ")
		case strings.HasPrefix(line, "FROM "):
			froms = append(froms, strings.Fields(line)[1])
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimPrefix(line, "USER ")
		}
	}
	require.NotEmpty(t, build, "the Dockerfile builds with go build")
	require.Len(t, froms, 2, "multi-stage")
	assert.True(t, strings.HasPrefix(froms[0], "golang:1.26"), "the build stage's Go is the module's: %s", froms[0])
	assert.Contains(t, froms[1], "distroless/static")
	assert.NotEmpty(t, user)
	assert.NotContains(t, []string{"root", "0", "0:0"}, user)

	out := filepath.Join(t.TempDir(), "bridge")
	build = strings.Replace(build, "/out/bridge", out, 1)
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = ".."
	cmd.Env = os.Environ()
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", build, b)

	bin, err := elf.Open(out)
	require.NoError(t, err)
	defer bin.Close()
	for _, p := range bin.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "static: no dynamic loader")
	}
	help, err := exec.Command(out, "-h").CombinedOutput()
	require.NoError(t, err, string(help))
	assert.Contains(t, string(help), "BRIDGE_NATS_URL")
}
