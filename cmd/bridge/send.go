package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// sendActions are the events `bridge send` can play, in the order it plays them with "all".
var sendActions = []string{"push", "delete", "chart_push", "chart_delete", "quarantine", "ping"}

// eventGridTypes are the Event Grid types of the actions Event Grid delivers; ACR sends quarantine and
// ping as native webhooks only.
var eventGridTypes = map[string]string{
	"push":         "Microsoft.ContainerRegistry.ImagePushed",
	"delete":       "Microsoft.ContainerRegistry.ImageDeleted",
	"chart_push":   "Microsoft.ContainerRegistry.ChartPushed",
	"chart_delete": "Microsoft.ContainerRegistry.ChartDeleted",
}

const sendUsage = `Usage: bridge send [flags] [event ...]

Posts sample ACR events to a bridge, the way Azure would: a local stand-in for ACR and Event Grid.
Events: push (the default), delete, chart_push, chart_delete, quarantine, ping, or all.
Formats: webhook (ACR native webhook), eventgrid (Event Grid schema), cloudevents (CloudEvents 1.0).
Before Event Grid formats it performs the subscription's validation handshake, as Event Grid does.

`

// sender posts events to one bridge in one format.
type sender struct {
	client   *http.Client
	url      string
	format   string
	token    string
	registry string
	repo     string
	tag      string
	out      io.Writer
}

func runSend(ctx context.Context, args []string, getenv environment, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := sender{client: &http.Client{Timeout: 35 * time.Second}, out: stdout}
	fs.StringVar(&s.url, "url", "http://localhost:8080", "base URL of the bridge")
	fs.StringVar(&s.format, "format", "webhook", "webhook, eventgrid or cloudevents")
	fs.StringVar(&s.token, "token", firstToken(getenv), "shared secret sent as Authorization: Bearer (default: the first of BRIDGE_AUTH_TOKENS)")
	fs.StringVar(&s.registry, "registry", "myregistry", "registry name")
	fs.StringVar(&s.repo, "repository", "hello-world", "repository")
	fs.StringVar(&s.tag, "tag", "v1", "tag")
	ca := fs.String("ca", "", "PEM file of the CA that issued an https bridge's certificate (a private CA); the system roots, or SSL_CERT_FILE, otherwise")
	fs.Usage = func() {
		fmt.Fprint(stderr, sendUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	s.url = strings.TrimSuffix(s.url, "/")
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca: no PEM certificate in %s", *ca)
		}
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	}
	actions := fs.Args()
	switch {
	case len(actions) == 0:
		actions = []string{"push"}
	case len(actions) == 1 && actions[0] == "all":
		actions = sendActions
	}
	for _, a := range actions {
		if !slices.Contains(sendActions, a) {
			return fmt.Errorf("unknown event %q (want %s or all)", a, strings.Join(sendActions, ", "))
		}
	}

	switch s.format {
	case "webhook":
	case "eventgrid", "cloudevents":
		if err := s.handshake(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown format %q (want webhook, eventgrid or cloudevents)", s.format)
	}
	var failed int
	for _, a := range actions {
		if s.format != "webhook" && eventGridTypes[a] == "" {
			fmt.Fprintf(s.out, "%-13s skipped: ACR sends %s only as a native webhook (--format webhook)\n", a, a)
			continue
		}
		code, body, err := s.send(ctx, a)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.out, "%-13s %s  %d  %s\n", a, s.format, code, strings.TrimSpace(string(body)))
		if code != http.StatusOK {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d events not accepted", failed, len(actions))
	}
	return nil
}

// handshake validates the "subscription" as Event Grid does before its first delivery: a validation
// event for the Event Grid schema, an OPTIONS abuse-protection request for CloudEvents.
func (s *sender) handshake(ctx context.Context) error {
	if s.format == "cloudevents" {
		req, err := http.NewRequestWithContext(ctx, http.MethodOptions, s.url+"/eventgrid", nil)
		if err != nil {
			return err
		}
		req.Header.Set("WebHook-Request-Origin", "eventgrid.azure.net")
		req.Header.Set("WebHook-Request-Rate", "120")
		resp, err := s.client.Do(req)
		if err != nil {
			return fmt.Errorf("validation handshake: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("WebHook-Allowed-Origin") != "eventgrid.azure.net" {
			return fmt.Errorf("validation handshake: status %d, WebHook-Allowed-Origin %q: Event Grid would not deliver", resp.StatusCode, resp.Header.Get("WebHook-Allowed-Origin"))
		}
		fmt.Fprintf(s.out, "%-13s OPTIONS  200  WebHook-Allowed-Origin: eventgrid.azure.net\n", "handshake")
		return nil
	}
	code := newID()
	body, _ := json.Marshal([]map[string]any{{
		"id": newID(), "topic": s.topic(), "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
		"eventTime": time.Now().UTC().Format(time.RFC3339Nano), "dataVersion": "1", "metadataVersion": "1",
		"data": map[string]string{"validationCode": code, "validationUrl": "https://rp-eastus2.eventgrid.azure.net/validate?id=" + code},
	}})
	status, resp, err := s.post(ctx, "/eventgrid", "application/json", body, "SubscriptionValidation")
	if err != nil {
		return fmt.Errorf("validation handshake: %w", err)
	}
	var v struct {
		ValidationResponse string `json:"validationResponse"`
	}
	if status != http.StatusOK || json.Unmarshal(resp, &v) != nil || v.ValidationResponse != code {
		return fmt.Errorf("validation handshake: status %d, body %q: Event Grid would not deliver", status, strings.TrimSpace(string(resp)))
	}
	fmt.Fprintf(s.out, "%-13s POST     200  validationResponse matches\n", "handshake")
	return nil
}

// send posts one sample event.
func (s *sender) send(ctx context.Context, action string) (int, []byte, error) {
	data := s.sample(action)
	switch s.format {
	case "webhook":
		body, _ := json.Marshal(data)
		return s.post(ctx, "/webhooks/acr/"+s.registry, "application/json", body, "")
	case "eventgrid":
		body, _ := json.Marshal([]map[string]any{{
			"id": newID(), "topic": s.topic(), "subject": s.subject(action), "eventType": eventGridTypes[action],
			"eventTime": data["timestamp"], "data": data, "dataVersion": "1.0", "metadataVersion": "1",
		}})
		return s.post(ctx, "/eventgrid", "application/json", body, "Notification")
	default:
		body, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": newID(), "source": s.topic(), "type": eventGridTypes[action],
			"subject": s.subject(action), "time": data["timestamp"], "datacontenttype": "application/json", "data": data,
		})
		return s.post(ctx, "/eventgrid", "application/cloudevents+json; charset=utf-8", body, "Notification")
	}
}

func (s *sender) post(ctx context.Context, path, contentType string, body []byte, aegType string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	if aegType != "" {
		req.Header.Set("aeg-event-type", aegType)
		req.Header.Set("aeg-delivery-count", "0")
		req.Header.Set("aeg-subscription-name", "BRIDGE-SEND")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", s.url+path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, nil
}

func (s *sender) topic() string {
	return "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo/providers/Microsoft.ContainerRegistry/registries/" + s.registry
}

// subject is Event Grid's subject of an ACR event: repository:tag (repository for a delete by digest).
func (s *sender) subject(action string) string {
	switch action {
	case "delete", "chart_delete":
		return s.repo
	case "chart_push":
		return s.repo + ":" + s.chartFile()
	}
	return s.repo + ":" + s.tag
}

func (s *sender) chartFile() string { return s.repo + "-" + strings.TrimPrefix(s.tag, "v") + ".tgz" }

// sample is the ACR event data of an action, shaped like the samples of Azure's reference pages.
func (s *sender) sample(action string) map[string]any {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	data := map[string]any{"id": newID(), "timestamp": now, "action": action}
	if action == "ping" {
		return data
	}
	sum := sha256.Sum256([]byte(s.repo + ":" + s.tag))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	host := s.registry + ".azurecr.io"
	target := map[string]any{"repository": s.repo, "digest": digest}
	request := map[string]any{"id": newID(), "host": host, "method": "PUT", "useragent": "docker/24.0.7 go/go1.20.10 (bridge send)"}
	switch action {
	case "push", "quarantine":
		target["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
		target["size"], target["length"] = 524, 524
		target["tag"] = s.tag
	case "delete":
		target["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
		request["method"] = "DELETE"
	case "chart_push":
		target["mediaType"] = "application/vnd.acr.helm.chart"
		target["size"] = 25265
		target["tag"], target["name"], target["version"] = s.chartFile(), s.repo, strings.TrimPrefix(s.tag, "v")
	case "chart_delete":
		target["mediaType"] = "application/vnd.acr.helm.chart"
		target["tag"], target["name"], target["version"] = s.chartFile(), s.repo, strings.TrimPrefix(s.tag, "v")
		request["method"] = "DELETE"
	}
	data["target"], data["request"] = target, request
	data["actor"], data["source"] = map[string]any{}, map[string]any{}
	return data
}

// newID returns a random UUID (version 4), as Azure's ids are.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func firstToken(getenv environment) string {
	t, _, _ := strings.Cut(getenv.or("BRIDGE_AUTH_TOKENS", ""), ",")
	return strings.TrimSpace(t)
}
