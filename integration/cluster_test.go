package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// clusterNode is one nats-server process of a test cluster.
type clusterNode struct {
	name        string
	port, cport int
	p           *proc
}

// natsCluster starts three nats-server processes with JetStream in one cluster and returns them with the
// comma-separated client URL list. sync is the servers' jetstream sync_interval ("always", "2m"); empty
// leaves NATS's default.
func natsCluster(t testing.TB, sync string) ([]*clusterNode, string) {
	t.Helper()
	nodes := make([]*clusterNode, 3)
	var routes []string
	for i := range nodes {
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), port: freePort(t), cport: freePort(t)}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].cport))
	}
	syncLine := ""
	if sync != "" {
		syncLine = "sync_interval: " + sync
	}
	var urls []string
	for _, n := range nodes {
		conf := filepath.Join(t.TempDir(), n.name+".conf")
		require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `
server_name: %s
listen: "127.0.0.1:%d"
jetstream { store_dir: %q, %s }
cluster { name: bridge-test, listen: "127.0.0.1:%d", routes: [%s] }
`, n.name, n.port, t.TempDir(), syncLine, n.cport, strings.Join(routes, ", ")), 0o600))
		n.p = start(t, nil, natsServerBin, "-c", conf)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	for _, n := range nodes {
		waitTCP(t, fmt.Sprintf("127.0.0.1:%d", n.port))
	}
	return nodes, strings.Join(urls, ",")
}

// createR3Stream creates the stream as deployments/nats/stream-acr-events.json defines it (the operator
// does; the bridge does not), once the cluster has a meta leader.
func createR3Stream(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACR_EVENTS", Subjects: []string{"acr.>", "eventgrid.>"},
			Replicas: 3, Duplicates: 10 * time.Minute, Storage: jetstream.FileStorage, AllowAtomicPublish: true})
		return err == nil
	}, 30*time.Second, 250*time.Millisecond, "the cluster did not create the R3 stream")
}
