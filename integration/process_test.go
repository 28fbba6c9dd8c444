package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
)

// proc is a child process whose output the test keeps.
type proc struct {
	cmd *exec.Cmd
	out *natstest.LogBuffer
}

func start(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	return startTo(t, nil, env, name, args...)
}

// startTo is start with standard output going to the file stdout, as a container's goes to its runtime
// (nil keeps it in memory, for the test's failure messages).
func startTo(t testing.TB, stdout *os.File, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), out: &natstest.LogBuffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop signals the process and waits for it to exit.
func (p *proc) stop(sig syscall.Signal) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Wait()
}

// natsServer starts a nats-server process with JetStream on port, storing in dir.
func natsServer(t testing.TB, port int, dir string) *proc {
	t.Helper()
	p := start(t, nil, natsServerBin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir)
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))
	return p
}

// natsServerSyncAlways starts a nats-server process like natsServer, syncing every write to disk before
// its PubAck (jetstream { sync_interval: always }), as deployments/nats/nats.conf does.
func natsServerSyncAlways(t testing.TB, port int, dir string) *proc {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, "listen: \"127.0.0.1:%d\"\njetstream { store_dir: %q, sync_interval: always }\n", port, dir), 0o600))
	p := start(t, nil, natsServerBin, "-c", conf)
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))
	return p
}

// bridgeProcess starts the built bridge with env and waits until it serves.
func bridgeProcess(t testing.TB, env ...string) (*proc, string) {
	t.Helper()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := start(t, append([]string{"BRIDGE_LISTEN_ADDR=" + addr}, env...), bridgeBin)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "bridge did not serve")
	return p, "http://" + addr
}

// waitTCP waits until something accepts connections on addr. A plain TCP connection, not an HTTP request:
// nats-server greets a client first, which an HTTP client reports as a response nobody asked for.
func waitTCP(t testing.TB, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 20*time.Second, 20*time.Millisecond, "nothing listens on %s", addr)
}

func isRefused(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("connection refused"))
}
