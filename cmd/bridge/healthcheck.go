package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
)

// runHealthcheck asks a bridge's /readyz and fails unless it answers 200: a container health check for
// images without a shell or curl.
func runHealthcheck(ctx context.Context, args []string, getenv environment, stdout io.Writer) error {
	host, port, err := net.SplitHostPort(getenv.or("BRIDGE_LISTEN_ADDR", ":8080"))
	if err != nil {
		return fmt.Errorf("BRIDGE_LISTEN_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if getenv.or("BRIDGE_TLS_CERT_FILE", "") != "" || getenv.or("BRIDGE_ACME_DOMAINS", "") != "" {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/readyz"
	if len(args) > 0 {
		url = args[0]
	}
	client := http.DefaultClient
	if u, err := neturl.Parse(url); err == nil && u.Scheme == "https" && isLoopback(u.Hostname()) {
		// The bridge's own listener, asked by the container it runs in: whether it is ready is the
		// question, not who it is, and its certificate names the public host, not the loopback address.
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check: %s answered %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(stdout, string(body))
	return nil
}

// isLoopback reports whether host is a loopback address or localhost.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
