package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/azuritetest"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"github.com/natsbridge/acr-nats-bridge/redrive"
)

// deadLetterBlob is a blob of n Event Grid schema ImagePushed events, ids prefix-0 .. prefix-(n-1), as
// Event Grid writes them after giving up.
func deadLetterBlob(prefix string, n int) []byte {
	evs := make([]map[string]any, n)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		evs[i] = map[string]any{"id": id, "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",
			"subject": "team/web:v1", "eventType": "Microsoft.ContainerRegistry.ImagePushed", "eventTime": "2026-12-01T10:00:00.1234567Z",
			"dataVersion": "1.0", "metadataVersion": "1", "data": map[string]any{"id": "d-" + id, "action": "push",
				"target": map[string]any{"repository": "team/web", "tag": "v1", "digest": "sha256:" + strings.Repeat("b", 64)}},
			"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 18, "lastDeliveryOutcome": "TimedOut", "lastHttpStatusCode": 408,
			"publishTime": "2026-12-01T10:00:01Z", "lastDeliveryAttemptTime": "2026-12-02T10:00:01Z"}
	}
	b, err := json.Marshal(evs)
	if err != nil {
		panic(err) // maps of strings and numbers always encode
	}
	return b
}

// uploadBlobs writes blobs of perBlob events each, spread over the hours of a day, at most 16 at a time;
// the event ids start with prefix.
func uploadBlobs(t testing.TB, c *container.Client, blobs, perBlob int, prefix string) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range blobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("MYSUB/2026/12/1/%d/%04d.json", i%24, i)
			_, err := c.NewBlockBlobClient(name).UploadBuffer(context.Background(), deadLetterBlob(fmt.Sprintf("%s%04d", prefix, i), perBlob), nil)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
}

// doneBlobs counts the blobs a redrive tagged done.
func doneBlobs(t testing.TB, c *container.Client) int {
	t.Helper()
	done := 0
	pager := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Tags: true}})
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		require.NoError(t, err)
		for _, b := range page.Segment.BlobItems {
			if b.BlobTags != nil {
				for _, tag := range b.BlobTags.BlobTagSet {
					if *tag.Key == redrive.DoneTag {
						done++
					}
				}
			}
		}
	}
	return done
}

// redriveCmd is the built bridge's redrive of the container at sasURL into natsURL.
func redriveCmd(sasURL, natsURL string, args ...string) *exec.Cmd {
	cmd := exec.Command(bridgeBin, append([]string{"redrive", "blobs", "--container", sasURL}, args...)...)
	cmd.Env = append(cmd.Environ(), "BRIDGE_NATS_URL="+natsURL, "BRIDGE_PUBLISH_TIMEOUT=3s")
	return cmd
}

// TestRedriveBinary: the built bridge redrives dead-letter blobs from Azurite into a real nats-server.
// Killed mid-run, and again with NATS stopped under it, it resumes: every event stored once, every blob
// done, and a rerun reads nothing.
func TestRedriveBinary(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "deadletters")
	const blobs, perBlob = 120, 50
	uploadBlobs(t, c, blobs, perBlob, "b")
	sasURL := azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, time.Now().Add(time.Hour))
	port := freePort(t)
	dir := t.TempDir()
	ns := natsServerSyncAlways(t, port, dir)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)

	// A dry run reads everything and touches nothing.
	out, err := redriveCmd(sasURL, "nats://127.0.0.1:1", "--dry-run").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), fmt.Sprintf("%d events in %d blobs", blobs*perBlob, blobs))
	assert.Contains(t, string(out), fmt.Sprintf("%d events  Microsoft.ContainerRegistry.ImagePushed", blobs*perBlob))
	assert.NotContains(t, string(out), "sig=")
	assert.Zero(t, doneBlobs(t, c))

	// SIGKILL once some blobs are done.
	cmd := redriveCmd(sasURL, natsURL, "--workers", "2")
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return doneBlobs(t, c) >= 5 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	killedAt := doneBlobs(t, c)
	require.Less(t, killedAt, blobs, "killed mid-run")

	// NATS stopped under a second run: it stops with an error in time, leaving the rest undone.
	cmd = redriveCmd(sasURL, natsURL, "--workers", "2")
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return doneBlobs(t, c) >= killedAt+5 }, 60*time.Second, 10*time.Millisecond)
	ns.stop(syscall.SIGKILL)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.Error(t, err, "a run NATS failed under exits non-zero:\n%s", output.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the run did not end when NATS stopped:\n%s", output.String())
	}
	assert.Contains(t, output.String(), "redrive stopped")
	stoppedAt := doneBlobs(t, c)
	require.Less(t, stoppedAt, blobs)

	// NATS back: the rerun finishes the rest; every event is stored once.
	natsServerSyncAlways(t, port, dir)
	out, err = redriveCmd(sasURL, natsURL).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), fmt.Sprintf("%d done before", stoppedAt))
	assert.Equal(t, blobs, doneBlobs(t, c))
	ids := natstest.IDs(natstest.StoredAt(t, natsURL, "ACR_EVENTS"))
	assert.Len(t, ids, blobs*perBlob)
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}

	// A rerun reads no blob and stores nothing.
	out, err = redriveCmd(sasURL, natsURL).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), fmt.Sprintf("blobs 0 (%d done before, 0 outside the window), events 0, stored 0", blobs))
	assert.Len(t, natstest.StoredAt(t, natsURL, "ACR_EVENTS"), blobs*perBlob)
	t.Logf("killed after %d blobs, NATS stopped after %d, resumed to %d: %d events stored once", killedAt, stoppedAt, blobs, len(ids))
}

// Clear errors for what a person gets wrong: an expired SAS, a container that does not exist, NATS
// that cannot be reached. Each exits non-zero and prints no secret.
func TestRedriveBinaryErrors(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "deadletters")
	uploadBlobs(t, c, 1, 1, "b")
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for _, tc := range []struct {
		name, url, nats, want string
	}{
		{"expired SAS", azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, time.Now().Add(-time.Hour)), natsURL, "the SAS in the URL expired at"},
		{"no tag permission", azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true}, time.Now().Add(time.Hour)), natsURL, "lacks the permission tag (t)"},
		{"missing container", "nosuchcontainer", natsURL, "the container does not exist"},
		{"NATS unreachable", azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, time.Now().Add(time.Hour)), fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)), "BRIDGE_NATS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := redriveCmd(tc.url, tc.nats)
			// A bare container name is authenticated by the account's connection string.
			cmd.Env = append(cmd.Env, "AZURE_STORAGE_CONNECTION_STRING="+az.ConnectionString)
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "%s", out)
			assert.Contains(t, string(out), tc.want)
			assert.NotContains(t, string(out), "sig=")
			assert.NotContains(t, string(out), azuritetest.Key)
		})
	}
	assert.Zero(t, doneBlobs(t, c))
}

// TestRedriveDeadLettersBinary: the built bridge, run with BRIDGE_MAX_JSON_DEPTH=4, dead-letters an event
// nested deeper; `bridge redrive deadletters` with the default limit publishes it and deletes its dead
// letter, and leaves the one that still cannot be normalised.
func TestRedriveDeadLettersBinary(t *testing.T) {
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	p, url := bridgeProcess(t, "BRIDGE_NATS_URL="+natsURL, "BRIDGE_MAX_JSON_DEPTH=4")
	var evs []map[string]any
	require.NoError(t, json.Unmarshal(deadLetterBlob("dl", 3), &evs))
	evs[1]["data"].(map[string]any)["target"].(map[string]any)["annotations"] = map[string]any{"a": map[string]any{"b": "c"}}
	delete(evs[2]["data"].(map[string]any), "target")
	body, err := json.Marshal(evs)
	require.NoError(t, err)
	resp, err := http.Post(url+"/eventgrid", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", p.out)
	p.stop(syscall.SIGTERM)

	subjects := func() map[string]int {
		out := map[string]int{}
		for _, m := range natstest.StoredAt(t, natsURL, "ACR_EVENTS") {
			out[m.Subject]++
		}
		return out
	}
	require.Equal(t, map[string]int{"acr.image.pushed.myregistry.team.web": 1, "acr.deadletter": 2}, subjects())

	cmd := exec.Command(bridgeBin, "redrive", "deadletters")
	cmd.Env = append(cmd.Environ(), "BRIDGE_NATS_URL="+natsURL)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "dead letters 2, redriven 1, still dead letters 1, failed 0")
	assert.Contains(t, string(out), "1 stay: Microsoft.ContainerRegistry.ImagePushed event without data.target")
	assert.Equal(t, map[string]int{"acr.image.pushed.myregistry.team.web": 2, "acr.deadletter": 1}, subjects())
}

// BenchmarkRedrive measures a backlog of 100,000 dead-lettered events in 1,000 blobs redriven by the built
// bridge into the embedded NATS server of a bridge running beside it, syncing every write (its default):
// go test ./integration -run '^$' -bench Redrive -benchtime 1x
func BenchmarkRedrive(b *testing.B) {
	for range b.N {
		benchRedrive(b, 1000, 100)
	}
}

func benchRedrive(t testing.TB, blobs, perBlob int) {
	az := azuritetest.Start(t)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	bridge, _ := bridgeProcess(t, "BRIDGE_EMBEDDED_NATS_ADDR="+natsAddr, "BRIDGE_EMBEDDED_NATS_DIR="+t.TempDir())
	natsURL := "nats://" + natsAddr
	events := blobs * perBlob
	for run, workers := range []int{16, 32, 16} {
		atomic := "true"
		if run == 2 {
			atomic = "false"
		}
		c := az.Container(t, fmt.Sprintf("deadletters-%d", run))
		start := time.Now()
		uploadBlobs(t, c, blobs, perBlob, fmt.Sprintf("r%d", run))
		uploaded := time.Since(start)
		sasURL := azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, time.Now().Add(time.Hour))
		cpu0 := cpuSeconds(t, bridge.cmd.Process.Pid)
		cmd := redriveCmd(sasURL, natsURL, "--workers", strconv.Itoa(workers))
		// As with BRIDGE_NATS_URL unset, the embedded server's default: every write synced, so atomic batches.
		cmd.Env = append(cmd.Env, "BRIDGE_ATOMIC_BATCHES="+atomic)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		start = time.Now()
		require.NoError(t, cmd.Run(), "%s", out.String())
		elapsed := time.Since(start)
		require.Contains(t, out.String(), fmt.Sprintf("events %d, stored %d", events, events))
		fmt.Printf("redrive of %d events in %d blobs (uploaded in %s), %d workers, atomic batches %s, into the embedded server syncing always: %s, %.0f events/s, %.0f blobs/s; CPU: the redrive %.1f s, the bridge with its NATS %.1f s\n",
			events, blobs, uploaded.Round(time.Second), workers, atomic, elapsed.Round(10*time.Millisecond), float64(events)/elapsed.Seconds(), float64(blobs)/elapsed.Seconds(),
			cmd.ProcessState.UserTime().Seconds()+cmd.ProcessState.SystemTime().Seconds(), cpuSeconds(t, bridge.cmd.Process.Pid)-cpu0)
	}
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "ACR_EVENTS")
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(3*events), info.State.Msgs, "every event stored once")
}
