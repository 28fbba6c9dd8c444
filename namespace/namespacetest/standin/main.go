// Command standin runs the stand-in Event Grid namespace of the tests on this machine, so that pulling can
// be tried without Azure:
//
//	go run ./namespace/namespacetest/standin --env standin.env &
//	set -a; . ./standin.env; set +a; go run ./cmd/bridge
//	go run ./cmd/bridge tail
//
// It prints (and with --env writes) the BRIDGE_NAMESPACE_* settings and SSL_CERT_FILE that point the bridge
// at it, puts a few ACR events on its subscription, and serves until interrupted. More events go to its
// topic as to Azure's: POST {endpoint}/topics/{topic}:publish?api-version=2024-06-01 with the header
// "Authorization: SharedAccessKey {key}" and a CloudEvent (application/cloudevents+json) or a batch of them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/natsbridge/acr-nats-bridge/namespace/namespacetest"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("standin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7443", "address to serve HTTPS on")
	envFile := fs.String("env", "", "also write the settings to this file (KEY=value lines)")
	dir := fs.String("dir", os.TempDir(), "directory for the server's certificate")
	samples := fs.Int("samples", 3, "ACR events to put on the subscription at start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := namespacetest.Start(namespacetest.Options{}, *addr, *dir)
	if err != nil {
		return err
	}
	defer ns.Close()
	settings := strings.Join([]string{
		"BRIDGE_NAMESPACE_ENDPOINT=" + ns.URL,
		"BRIDGE_NAMESPACE_TOPIC=" + ns.Topic(),
		"BRIDGE_NAMESPACE_SUBSCRIPTION=" + ns.Subscription(),
		"BRIDGE_NAMESPACE_KEY=" + ns.Key,
		"SSL_CERT_FILE=" + ns.CertFile,
	}, "\n") + "\n"
	if *envFile != "" {
		if err := os.WriteFile(*envFile, []byte(settings), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, settings)
	for i := range *samples {
		ns.Publish(sample(i))
	}
	fmt.Fprintf(stderr, "stand-in Event Grid namespace on %s: %d events waiting on %s/%s; Ctrl-C stops it\n", ns.URL, *samples, ns.Topic(), ns.Subscription())
	<-ctx.Done()
	return nil
}

// sample is the i-th ImagePushed CloudEvent, as a registry's system topic routes it to a namespace topic.
func sample(i int) []byte {
	id := fmt.Sprintf("standin-%d-%d", time.Now().Unix(), i)
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo/providers/Microsoft.ContainerRegistry/registries/myregistry",`+
		`"subject":"hello-world:v%d","type":"Microsoft.ContainerRegistry.ImagePushed","time":%q,"datacontenttype":"application/json",`+
		`"data":{"id":%q,"timestamp":%q,"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":524,`+
		`"digest":"sha256:%064x","length":524,"repository":"hello-world","tag":"v%d"},"request":{"id":"r-%d","host":"myregistry.azurecr.io","method":"PUT","useragent":"standin"}}}`,
		id, i+1, time.Now().UTC().Format(time.RFC3339Nano), id, time.Now().UTC().Format(time.RFC3339Nano), i+1, i+1, i)
}
