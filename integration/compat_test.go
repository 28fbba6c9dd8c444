package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// olderNATS is a nats-server release from before atomic batch publishing (2.12).
const olderNATS = "v2.10.29"

// TestNATSWithoutAtomicBatches: against a NATS server that has no atomic batches, the bridge creates its
// stream, says batches are off, and stores a batched delivery one message at a time; a redelivery is
// stored once and counted as duplicates.
func TestNATSWithoutAtomicBatches(t *testing.T) {
	bin := buildNATSServer(t, olderNATS)
	port := freePort(t)
	start(t, nil, bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	p, url := bridgeProcess(t, "BRIDGE_NATS_URL="+natsURL, "BRIDGE_ATOMIC_BATCHES=true")

	for _, want := range []string{`"duplicates":0`, `"duplicates":50`} {
		resp, err := http.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody("old-server", 0, 50)))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, string(body))
		assert.Contains(t, string(body), want)
	}
	ids := storedIDs(t, natsURL)
	assert.Len(t, ids, 50)
	for id, n := range ids {
		assert.Equal(t, 1, n, "%s stored once", id)
	}
	assert.Contains(t, p.out.String(), `"allow_atomic":false`)
	assert.Contains(t, p.out.String(), "the stream does not allow atomic batch publishing")
}

// buildNATSServer builds a nats-server release from the Go module proxy into the test's temporary
// directory; the build cache keeps it for the next run.
func buildNATSServer(t *testing.T, version string) string {
	t.Helper()
	bin, _ := buildFromModule(t, "github.com/nats-io/nats-server/v2", version, "github.com/nats-io/nats-server/v2")
	return bin
}

// buildFromModule builds the command pkg of module at version from the Go module proxy, and returns the
// binary and the module's source directory (for the files it ships).
func buildFromModule(t *testing.T, module, version, pkg string) (bin, dir string) {
	t.Helper()
	mod := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(mod, "go.mod"),
		fmt.Appendf(nil, "module build\n\ngo 1.26.0\n\nrequire %s %s\n", module, version), 0o600))
	bin = filepath.Join(mod, filepath.Base(pkg))
	start := time.Now()
	cmd := exec.Command("go", "build", "-mod=mod", "-o", bin, pkg)
	cmd.Dir = mod
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build %s %s: %s", pkg, version, out)
	cmd = exec.Command("go", "list", "-mod=mod", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = mod
	out, err = cmd.Output()
	require.NoError(t, err)
	t.Logf("built %s %s in %s", pkg, version, time.Since(start).Round(time.Second))
	return bin, strings.TrimSpace(string(out))
}
