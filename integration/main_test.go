// Package integration runs the built bridge binary against real nats-server processes.
package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Paths of the binaries TestMain builds from this module.
var bridgeBin, natsServerBin, referenceBin, cesdkBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bridge-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bridgeBin = filepath.Join(dir, "bridge")
	natsServerBin = filepath.Join(dir, "nats-server")
	referenceBin = filepath.Join(dir, "reference")
	cesdkBin = filepath.Join(dir, "cesdk")
	for _, b := range []struct{ out, pkg string }{
		{bridgeBin, "github.com/natsbridge/acr-nats-bridge/cmd/bridge"},
		{natsServerBin, "github.com/nats-io/nats-server/v2"},
		{referenceBin, "github.com/natsbridge/acr-nats-bridge/integration/reference"},
		{cesdkBin, "github.com/natsbridge/acr-nats-bridge/integration/cesdk"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.pkg, ":", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
