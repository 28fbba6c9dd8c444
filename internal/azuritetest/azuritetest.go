// Package azuritetest runs Azurite, the Azure Storage emulator, for tests: a real Azure Blob Storage API
// on a loopback port, which the Azure SDK reaches as it reaches Azure. Azurite comes from the npm registry,
// installed once into the user's cache directory by the first test that needs it.
package azuritetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/stretchr/testify/require"
)

// Version is the Azurite the tests run.
const Version = "3.35.0"

// The well-known development account every Azurite has.
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running emulator.
type Azurite struct {
	// BlobURL is the blob service's URL, with the account: http://127.0.0.1:{port}/devstoreaccount1.
	BlobURL string
	// ConnectionString authenticates with the account key, as AZURE_STORAGE_CONNECTION_STRING does.
	ConnectionString string
}

// Start runs Azurite's blob service on a free loopback port, in memory, until the test ends.
func Start(t testing.TB) *Azurite {
	t.Helper()
	bin := install(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--inMemoryPersistence",
		"--silent", "--skipApiVersionCheck", "--disableTelemetry", "--extentMemoryLimit", "512")
	cmd.Dir = t.TempDir()
	out, err := os.CreateTemp(t.TempDir(), "azurite-*.log")
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("azurite output:\n%s", b)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return true // no use waiting; the check below says so
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 60*time.Second, 50*time.Millisecond, "azurite did not listen on %s", addr)
	select {
	case <-exited:
		t.Fatalf("azurite exited at start (%s)", cmd.ProcessState)
	default:
	}
	a := &Azurite{BlobURL: "http://" + addr + "/" + Account}
	a.ConnectionString = fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;", Account, Key, a.BlobURL)
	return a
}

// Container creates a container and returns a client of it that authenticates with the account key.
func (a *Azurite) Container(t testing.TB, name string) *container.Client {
	t.Helper()
	c, err := container.NewClientFromConnectionString(a.ConnectionString, name, nil)
	require.NoError(t, err)
	_, err = c.Create(context.Background(), nil)
	require.NoError(t, err)
	return c
}

// SASURL is the container's URL with a SAS of the permissions, expiring at expiry.
func SASURL(t testing.TB, c *container.Client, perms sas.ContainerPermissions, expiry time.Time) string {
	t.Helper()
	u, err := c.GetSASURL(perms, expiry, &container.GetSASURLOptions{StartTime: ptr(time.Now().Add(-time.Hour))})
	require.NoError(t, err)
	return u
}

func ptr[T any](v T) *T { return &v }

// install returns the azurite-blob command, installing Azurite with npm into the user's cache directory
// the first time; a lock keeps test processes that start at once from installing it twice.
func install(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	require.NoError(t, err)
	dir := filepath.Join(cache, "acr-nats-bridge", "azurite-"+Version)
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close too
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	start := time.Now()
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--prefix", dir, "azurite@"+Version)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "npm install azurite@%s (needs node and npm, and the npm registry):\n%s", Version, b)
	t.Logf("installed azurite %s into %s in %s", Version, dir, time.Since(start).Round(time.Second))
	return bin
}
