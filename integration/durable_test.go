package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryAckIsSynced runs the built bridge with its defaults (embedded NATS) under strace, and checks
// what a 200 promises: within every request, from its sending to its 200, the process synced a file to
// disk; for single events one sync each, for a batch at least one. A default that let NATS sync on a
// timer instead would leave the requests without a sync, and fail here.
func TestEveryAckIsSynced(t *testing.T) {
	stracePath, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("strace is not installed; .ci/run installs it")
		}
		t.Skip("strace is not installed (apt-get install strace); CI runs this test")
	}
	trace := filepath.Join(t.TempDir(), "syncs")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, []string{"BRIDGE_LISTEN_ADDR=" + addr, "BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0",
		"BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir()},
		stracePath, "-f", "-ttt", "-e", "trace=fsync,fdatasync", "-o", trace, bridgeBin)
	url := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 50*time.Millisecond, "the bridge under strace did not get ready")

	// Each request's window, from before it is sent to after its 200 is read.
	type window struct {
		name     string
		from, to float64
	}
	now := func() float64 { return float64(time.Now().UnixNano()) / 1e9 }
	var windows []window
	send := func(name, body string) {
		from := now()
		resp, err := http.Post(url+"/eventgrid", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, string(b))
		require.Contains(t, string(b), `"duplicates":0`, "new events, written now")
		windows = append(windows, window{name, from, now()})
	}
	for i := range 30 {
		send(fmt.Sprintf("single event %d", i), batchBody("synced", i, 1))
	}
	send("batch of 50", batchBody("synced-batch", 0, 50))

	// strace writes its last lines when the bridge exits: stop the bridge, not the tracer.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
	require.NoError(t, err)
	bridgePid, err := strconv.Atoi(strings.Fields(string(children))[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(bridgePid, syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())

	syncs := syncTimes(t, trace)
	for _, w := range windows {
		n := 0
		for _, s := range syncs {
			if s >= w.from && s <= w.to {
				n++
			}
		}
		assert.GreaterOrEqual(t, n, 1, "%s was answered 200 with no sync to disk in between", w.name)
	}
	t.Logf("%d fsync/fdatasync calls in all, 31 requests each with at least one", len(syncs))
}

// syncTimes reads the start times of the fsync and fdatasync calls in an `strace -f -ttt` output file:
// lines like `1234 1764370000.123456 fsync(8) = 0` or `... fsync(8 <unfinished ...>`.
func syncTimes(t *testing.T, path string) []float64 {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var times []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || !(strings.HasPrefix(fields[2], "fsync(") || strings.HasPrefix(fields[2], "fdatasync(")) {
			continue
		}
		ts, err := strconv.ParseFloat(fields[1], 64)
		require.NoError(t, err, sc.Text())
		times = append(times, ts)
	}
	require.NoError(t, sc.Err())
	return times
}
