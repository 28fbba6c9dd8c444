package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/natsbridge/acr-nats-bridge/bridge"
)

// runTail prints the events arriving on a subject, one line each, until ctx ends.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("BRIDGE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL")
	raw := fs.Bool("json", false, "print each message body as received instead of one summary line")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bridge tail [--server URL] [--json] [subject]\n\nPrints events as they arrive; subject defaults to %s.>\n\n", envOr("BRIDGE_SUBJECT_PREFIX", "acr"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	subject := envOr("BRIDGE_SUBJECT_PREFIX", "acr") + ".>"
	if fs.NArg() > 0 {
		subject = fs.Arg(0)
	}
	nc, err := nats.Connect(*server, nats.Name("acr-nats-bridge tail"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redactURL(*server), err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe(subject, msgs); err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	fmt.Fprintf(stderr, "listening on %s at %s\n", subject, redactURL(*server))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if *raw {
				fmt.Fprintf(stdout, "%s\n", m.Data)
				continue
			}
			fmt.Fprintln(stdout, summary(m))
		}
	}
}

// summary is one line per event: time, type, registry, repository:tag, digest.
func summary(m *nats.Msg) string {
	env, err := bridge.DecodeMessage(m)
	if err != nil {
		if reason := m.Header.Get(bridge.HeaderError); reason != "" {
			return fmt.Sprintf("%s  dead letter: %s", m.Subject, reason)
		}
		return fmt.Sprintf("%s  %d bytes (%s)", m.Subject, len(m.Data), strings.TrimPrefix(err.Error(), bridge.ErrNotEnvelope.Error()+": "))
	}
	ref, digest := "-", "-"
	if t := env.Data.Target; t != nil {
		if t.Repository != "" {
			ref = t.Repository
		}
		if t.Tag != "" {
			ref += ":" + t.Tag
		}
		if t.Digest != "" {
			digest = t.Digest
		}
	}
	return fmt.Sprintf("%s  %s  %s  %s  %s", env.Time, strings.TrimPrefix(env.Type, "Microsoft.ContainerRegistry."), env.Data.Registry, ref, digest)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
