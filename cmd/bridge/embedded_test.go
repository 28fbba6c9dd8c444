package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
)

// tmpfs mounts a tmpfs of size bytes for the test, or skips it where mounting is refused (not root).
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs is refused here (%v: %s); this test needs root", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes zeroes to path until the disk is full, and returns how many it wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	n, _ := io.Copy(f, io.LimitReader(zeroes{}, 1<<30))
	return n
}

type zeroes struct{}

func (zeroes) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// publisher publishes numbered messages with their ids and keeps those acknowledged.
type publisher struct {
	js    jetstream.JetStream
	acked []string
}

func (p *publisher) publish(id string, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m := nats.NewMsg("acr.test")
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Data = make([]byte, size)
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	p.acked = append(p.acked, id)
	return nil
}

// requireStoredOnce checks that every acknowledged message is in the stream, once.
func requireStoredOnce(t *testing.T, js jetstream.JetStream, acked []string) {
	t.Helper()
	ids := natstest.IDs(natstest.Stored(t, js, "S"))
	for _, id := range acked {
		require.Equal(t, 1, ids[id], "%s stored once", id)
	}
}

// The behaviour that the embedded server's recovery works around, shown on nats-server alone: once a
// stream met a write error (ENOSPC on a full tmpfs), it does not answer any later publish, also once the
// disk has room again; a restart of the server on the same store answers again, with every acknowledged
// message kept. docs/nats-server-write-errors.md has the figures.
func TestNATSServerWriteErrorIsSticky(t *testing.T) {
	mnt := tmpfs(t, 32<<20)
	opts := &server.Options{Port: -1, JetStream: true, StoreDir: filepath.Join(mnt, "nats"), SyncAlways: true, NoSigs: true}
	ns := natstest.Run(t, opts)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	p := &publisher{js: streamOn(t, nc)}
	for i := range 10 {
		require.NoError(t, p.publish(fmt.Sprintf("before-%d", i), 100))
	}
	filled := fill(t, filepath.Join(mnt, "filler"))
	var failed error
	for i := 0; failed == nil && i < 1000; i++ {
		failed = p.publish(fmt.Sprintf("full-%d", i), 2000)
	}
	require.ErrorIs(t, failed, context.DeadlineExceeded, "the publish that met the write error is not answered")

	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	start := time.Now()
	err = p.publish("freed", 100)
	require.ErrorIs(t, err, context.DeadlineExceeded, "with %d MiB free again the stream still does not answer", filled>>20)
	t.Logf("%d MiB freed: the next publish still went unanswered for %s", filled>>20, time.Since(start).Round(time.Millisecond))

	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	start = time.Now()
	ns = natstest.Run(t, opts)
	nc, err = nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	p.js, err = jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, p.publish("restarted", 100), "a restarted server takes writes")
	t.Logf("restarted and stored in %s; %d acknowledged messages", time.Since(start).Round(time.Millisecond), len(p.acked))
	requireStoredOnce(t, p.js, p.acked)
}

// streamOn creates the stream S on nc, capturing acr.> and taking atomic batches.
func streamOn(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "S", Subjects: []string{"acr.>"}, AllowAtomicPublish: true})
	require.NoError(t, err)
	return js
}

// startOn starts the bridge's embedded server on dir with BRIDGE_EMBEDDED_NATS_MAX_STORE maxStore.
func startOn(t *testing.T, dir, maxStore string, logs io.Writer) *natsConn {
	t.Helper()
	cfg, err := config.Load(mapEnv(map[string]string{"BRIDGE_EMBEDDED_NATS_ADDR": "127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR": dir, "BRIDGE_EMBEDDED_NATS_MAX_STORE": maxStore}))
	require.NoError(t, err)
	conn, err := startEmbedded(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.close(slog.New(slog.DiscardHandler)) })
	return conn
}

// The store limit is the size given, or its share of the room on the disk.
func TestEmbeddedStoreLimit(t *testing.T) {
	conn := startOn(t, filepath.Join(t.TempDir(), "nats"), "64MiB", io.Discard)
	assert.Equal(t, int64(64<<20), conn.embedded.server().JetStreamConfig().MaxStore)

	for _, bad := range []string{"0%", "101%", "lots", "1KiB", "-5GiB"} {
		_, err := config.Load(mapEnv(map[string]string{"BRIDGE_EMBEDDED_NATS_MAX_STORE": bad}))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "BRIDGE_EMBEDDED_NATS_MAX_STORE")
	}
}

// A full disk under the bridge's embedded server (a tmpfs filled by another file): the write error stops
// the store and is said once with its cause; once the file is removed, the server restarts in place by
// itself, the bridge's connection follows it, and every acknowledged message is stored once.
func TestEmbeddedRecoversFromAWriteError(t *testing.T) {
	mnt := tmpfs(t, 32<<20)
	logs := &logSink{}
	conn := startOn(t, filepath.Join(mnt, "nats"), "100%", logs)
	js := streamOn(t, conn.nc)
	p := &publisher{js: js}
	for i := range 10 {
		require.NoError(t, p.publish(fmt.Sprintf("before-%d", i), 100))
	}
	fill(t, filepath.Join(mnt, "filler"))
	var failed error
	for i := 0; failed == nil && i < 1000; i++ {
		failed = p.publish(fmt.Sprintf("full-%d", i), 2000)
	}
	require.Error(t, failed)
	require.Eventually(t, func() bool { return conn.embedded.Writes() != nil }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, conn.embedded.Writes().Error(), "no space left on device")
	time.Sleep(2 * recoverEvery)
	require.Error(t, conn.embedded.Writes(), "no restart while the disk is full")

	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	require.Eventually(t, func() bool { return conn.embedded.Writes() == nil }, 10*time.Second, 50*time.Millisecond, "%s", logs)
	require.Eventually(t, func() bool { return p.publish("recovered", 100) == nil }, 5*time.Second, 50*time.Millisecond, "the connection follows the restart")
	assert.Equal(t, 1, strings.Count(logs.String(), "the embedded NATS store refuses writes"), "said once")
	assert.Contains(t, logs.String(), "the embedded NATS store takes writes again")
	requireStoredOnce(t, js, p.acked)
}

// The store filled to its limit, a share of the disk: the server refuses publishes at once and Room says
// why; room freed on the disk raises the limit, and writes are taken again.
func TestEmbeddedStoreLimitRises(t *testing.T) {
	mnt := tmpfs(t, 64<<20)
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	_, err = io.Copy(f, io.LimitReader(zeroes{}, 32<<20))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	logs := &logSink{}
	conn := startOn(t, filepath.Join(mnt, "nats"), "50%", logs)
	before := conn.embedded.server().JetStreamConfig().MaxStore
	assert.InDelta(t, 16<<20, before, 1<<20, "half of the 32 MiB free")
	js := streamOn(t, conn.nc)
	p := &publisher{js: js}
	var refused error
	for i := 0; refused == nil && i < 10000; i++ {
		refused = p.publish(fmt.Sprintf("m-%d", i), 4000)
	}
	var apiErr *jetstream.APIError
	require.ErrorAs(t, refused, &apiErr)
	assert.Equal(t, jetstream.ErrorCode(10023), apiErr.ErrorCode, "insufficient resources: %v", refused)
	require.Error(t, conn.embedded.Room())
	assert.Contains(t, conn.embedded.Room().Error(), "the embedded NATS store is full")

	require.NoError(t, os.Remove(filler))
	conn.embedded.raiseLimit()
	after := conn.embedded.server().JetStreamConfig().MaxStore
	assert.Greater(t, after, before+(12<<20), "half of the disk, the store included")
	require.NoError(t, conn.embedded.Room())
	require.NoError(t, p.publish("after", 4000))
	assert.Contains(t, logs.String(), "the embedded NATS store limit was raised")
	requireStoredOnce(t, js, p.acked)
}

// A leak in nats-server that the bridge bounds, shown on nats-server alone: an atomic batch opened on a
// full disk fails to create its staging store (its stream metadata cannot be written), and the store's
// first block, already open, is never closed: one file and one flush goroutine per batch stay, also once the
// disk has room, after the server's 10 s batch timeout, and after the server's shutdown. The bridge opens no
// batch once it knows of the write error, so at most maxOpenBatches leak per full disk.
// docs/nats-server-write-errors.md has the figures. Should this test fail, nats-server closes them now.
func TestNATSServerLeaksStagingStoresOnAFullDisk(t *testing.T) {
	mnt := tmpfs(t, 32<<20)
	opts := &server.Options{Port: -1, JetStream: true, StoreDir: filepath.Join(mnt, "nats"), SyncAlways: true, NoSigs: true}
	ns := natstest.Run(t, opts)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js := streamOn(t, nc)
	fill(t, filepath.Join(mnt, "filler"))

	const batches = 8
	for b := range batches {
		msgs := make([]*nats.Msg, 20)
		for i := range msgs {
			msgs[i] = &nats.Msg{Subject: "acr.test", Header: nats.Header{jetstream.MsgIDHeader: {fmt.Sprintf("b%d-%d", b, i)}}, Data: make([]byte, 2000)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = jetstreamext.PublishMsgBatch(ctx, js, msgs)
		cancel()
		require.Error(t, err, "batch %d on a full disk", b)
	}
	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	time.Sleep(11 * time.Second) // past the server's 10 s batch timeout
	leaked := stagingFiles(t)
	t.Logf("%d batches refused on a full disk (%v): %d staging files still open 11 s after the disk had room again", batches, err, leaked)
	require.Equal(t, batches, leaked, "a staging store's block left open per batch")

	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	leaked = stagingFiles(t)
	t.Logf("after the server's shutdown: %d still open", leaked)
	assert.Equal(t, batches, leaked, "not closed by the server's shutdown either")
}

// stagingFiles is how many files this process holds open in atomic batches' staging stores.
func stagingFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.Contains(target, "/batches/") {
			n++
		}
	}
	return n
}

// A third behaviour of nats-server's, on nats-server alone (no disk fault needed): on a single server, an
// atomic batch whose commit crosses the store's limit is stored in part (the messages before the limit),
// and its commit is never answered, so the publisher waits for its whole timeout. The bridge gives up on
// the commits it is waiting for as soon as any publish is refused. docs/nats-server-write-errors.md.
// Should this test fail, nats-server answers such a commit now.
func TestNATSServerLeavesACommitOverTheLimitUnanswered(t *testing.T) {
	ns := natstest.Start(t, func(o *server.Options) { o.JetStreamMaxStore = 64 << 10; o.SyncAlways = true })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js := streamOn(t, nc)
	p := &publisher{js: js}
	for i := 0; i < 50; i++ { // 50 KiB of the 64
		require.NoError(t, p.publish(fmt.Sprintf("single-%d", i), 1000))
	}
	msgs := make([]*nats.Msg, 20)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: "acr.test", Header: nats.Header{jetstream.MsgIDHeader: {fmt.Sprintf("batch-%d", i)}}, Data: make([]byte, 1000)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = jetstreamext.PublishMsgBatch(ctx, js, msgs)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the commit is not answered")
	ids := natstest.IDs(natstest.Stored(t, js, "S"))
	inBatch := 0
	for i := range msgs {
		inBatch += ids[fmt.Sprintf("batch-%d", i)]
	}
	t.Logf("a batch of 20 over the limit: no answer in %s; %d of its messages stored", time.Since(start).Round(time.Millisecond), inBatch)
	assert.Greater(t, inBatch, 0, "stored in part")
	assert.Less(t, inBatch, len(msgs), "stored in part")
}
