// Package config reads the bridge's settings from BRIDGE_* environment variables.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/kelseyhightower/envconfig"

	"github.com/natsbridge/acr-nats-bridge/lookup"
)

// Prefix is the prefix of every variable.
const Prefix = "BRIDGE"

// Config is every setting of the bridge. The envconfig tags are the variable names without the prefix.
type Config struct {
	ListenAddr        string        `envconfig:"LISTEN_ADDR" default:":8080" desc:"HTTP listen address of the receiver; left unset with no authentication configured (no BRIDGE_AUTH_TOKENS, no Entra ID), the bridge listens on 127.0.0.1 only"`
	TLSCertFile       string        `envconfig:"TLS_CERT_FILE" desc:"PEM certificate (with its chain) to serve HTTPS on BRIDGE_LISTEN_ADDR, with BRIDGE_TLS_KEY_FILE; read again when it changes on disk"`
	TLSKeyFile        string        `envconfig:"TLS_KEY_FILE" desc:"PEM private key of BRIDGE_TLS_CERT_FILE"`
	TLSReloadInterval time.Duration `envconfig:"TLS_RELOAD_INTERVAL" default:"10s" desc:"how often the certificate and key files are checked for a change (at most 30s)"`
	ACMEDomains       []string      `envconfig:"ACME_DOMAINS" desc:"comma-separated DNS names to get certificates for from an ACME CA (TLS-ALPN-01 on BRIDGE_LISTEN_ADDR, so :443); only these names are served"`
	ACMEEmail         string        `envconfig:"ACME_EMAIL" desc:"contact email of the ACME account"`
	ACMECA            string        `envconfig:"ACME_CA" default:"https://acme-v02.api.letsencrypt.org/directory" desc:"ACME directory URL (Let's Encrypt production by default); a private CA's root is trusted through SSL_CERT_FILE"`
	ACMECacheDir      string        `envconfig:"ACME_CACHE_DIR" default:"./data/acme" desc:"directory keeping the ACME account key and certificates across restarts"`
	MetricsAddr       string        `envconfig:"METRICS_ADDR" desc:"listen address of a separate listener for GET /metrics; empty serves /metrics on BRIDGE_LISTEN_ADDR"`
	PprofAddr         string        `envconfig:"PPROF_ADDR" desc:"listen address for Go's /debug/pprof profiles (keep it on loopback); empty turns them off"`
	DefaultRegistry   string        `envconfig:"DEFAULT_REGISTRY" desc:"registry name for events that name none (no webhook path, topic or request.host)"`
	AllowedOrigins    []string      `envconfig:"ALLOWED_ORIGINS" default:"eventgrid.azure.net" desc:"comma-separated origins allowed by the CloudEvents OPTIONS handshake; * allows any"`
	Passthrough       bool          `envconfig:"PASSTHROUGH" default:"true" desc:"publish non-ACR events unchanged under BRIDGE_PASSTHROUGH_PREFIX; false answers them 400"`
	CEMode            string        `envconfig:"CE_MODE" default:"structured" desc:"CloudEvents content mode of published messages: structured or binary"`

	SubjectPrefix     string `envconfig:"SUBJECT_PREFIX" default:"acr" desc:"first subject token(s) of ACR events: {prefix}.{artifact}.{verb}.{registry}.{repository}"`
	PassthroughPrefix string `envconfig:"PASSTHROUGH_PREFIX" default:"eventgrid" desc:"first subject token(s) of passed-through events: {prefix}.{type tokens}"`

	NATSURL      string `envconfig:"NATS_URL" desc:"NATS server URL(s), comma-separated; empty starts an embedded NATS server"`
	NATSMode     string `envconfig:"NATS_MODE" default:"jetstream" desc:"jetstream (stored, acknowledged, de-duplicated) or core (live fan-out, no storage)"`
	NATSCreds    string `envconfig:"NATS_CREDS" desc:"path of a NATS credentials (.creds) file"`
	NATSUser     string `envconfig:"NATS_USER" desc:"NATS user name"`
	NATSPassword string `envconfig:"NATS_PASSWORD" desc:"NATS password"`
	NATSToken    string `envconfig:"NATS_TOKEN" desc:"NATS authentication token"`
	NATSTLSCA    string `envconfig:"NATS_TLS_CA" desc:"path of a PEM CA bundle to verify the NATS server"`
	NATSTLSCert  string `envconfig:"NATS_TLS_CERT" desc:"path of a PEM client certificate for NATS (with BRIDGE_NATS_TLS_KEY)"`
	NATSTLSKey   string `envconfig:"NATS_TLS_KEY" desc:"path of the PEM key of BRIDGE_NATS_TLS_CERT"`

	EmbeddedNATSAddr       string `envconfig:"EMBEDDED_NATS_ADDR" default:"127.0.0.1:4222" desc:"client listen address of the embedded NATS server (port 0 picks a free one)"`
	EmbeddedNATSDir        string `envconfig:"EMBEDDED_NATS_DIR" default:"./data/nats" desc:"JetStream storage directory of the embedded NATS server"`
	EmbeddedNATSMaxPayload int32  `envconfig:"EMBEDDED_NATS_MAX_PAYLOAD" default:"8388608" desc:"max_payload of the embedded NATS server in bytes (Event Grid events reach 1 MB before the envelope)"`
	EmbeddedNATSMaxStore   string `envconfig:"EMBEDDED_NATS_MAX_STORE" default:"75%" desc:"most the embedded NATS server stores: a size (512MiB, 20GiB; K, M, G and T are powers of 1024) or a share of the room on its disk, the store plus the free space, looked at again every 10 s and raised as room is freed; past it deliveries get 503 and /readyz says so"`
	EmbeddedNATSSync       string `envconfig:"EMBEDDED_NATS_SYNC" default:"always" desc:"when the embedded NATS server syncs stored events to disk: always (before each PubAck, so a 200 survives a power cut) or an interval such as 2m (NATS's own default: a power cut loses the acknowledged events of up to that long)"`

	Stream                string        `envconfig:"STREAM" default:"ACR_EVENTS" desc:"JetStream stream that captures {subject prefix}.> and {passthrough prefix}.>"`
	StreamCreate          bool          `envconfig:"STREAM_CREATE" default:"true" desc:"create the stream when it is absent (also when deleted while running)"`
	StreamDuplicateWindow time.Duration `envconfig:"STREAM_DUPLICATE_WINDOW" default:"10m" desc:"de-duplication window of a created stream; longer than Event Grid's early retries"`
	StreamMaxAge          time.Duration `envconfig:"STREAM_MAX_AGE" default:"168h" desc:"max age of messages in a created stream"`
	StreamReplicas        int           `envconfig:"STREAM_REPLICAS" default:"1" desc:"replicas of a created stream (3 on a production cluster)"`
	StreamStorage         string        `envconfig:"STREAM_STORAGE" default:"file" desc:"storage of a created stream: file or memory"`
	AtomicBatches         string        `envconfig:"ATOMIC_BATCHES" default:"auto" desc:"publish multi-event deliveries as JetStream atomic batches (NATS 2.12+, a stream with allow_atomic): true, false, or auto: batches where they pay, which is the embedded server syncing always and streams with replicas; set true for a single server of your own that syncs always"`

	NamespaceEndpoint     string        `envconfig:"NAMESPACE_ENDPOINT" desc:"https URL of an Event Grid namespace to pull events from (https://{namespace}.{region}-1.eventgrid.azure.net); set with its topic and subscription"`
	NamespaceTopic        string        `envconfig:"NAMESPACE_TOPIC" desc:"namespace topic to pull from"`
	NamespaceSubscription string        `envconfig:"NAMESPACE_SUBSCRIPTION" desc:"queue event subscription of the namespace topic to pull from"`
	NamespaceKey          string        `envconfig:"NAMESPACE_KEY" desc:"shared access key of the namespace; empty authenticates with Microsoft Entra ID (workload identity, managed identity, environment, Azure CLI)"`
	NamespaceReceivers    int           `envconfig:"NAMESPACE_RECEIVERS" default:"2" desc:"receive calls to the namespace under way at once"`
	NamespaceMaxEvents    int           `envconfig:"NAMESPACE_MAX_EVENTS" default:"100" desc:"most events one receive call takes (1-100)"`
	NamespaceMaxWait      time.Duration `envconfig:"NAMESPACE_MAX_WAIT" default:"60s" desc:"longest a receive call waits for events when there are none (10s-120s)"`
	NamespaceReleaseDelay time.Duration `envconfig:"NAMESPACE_RELEASE_DELAY" default:"10s" desc:"delay before an event released because NATS could not store it is delivered again: 0s, 10s, 60s, 10m or 1h"`

	RegistryLookup            string        `envconfig:"REGISTRY_LOOKUP" default:"off" desc:"look each pushed manifest up in its registry to tell charts, signatures, attestations, SBOMs and other artifacts from images: off, best-effort (a failed lookup publishes the event's own kind, lookup failed) or required (a failure that may pass answers 503, or releases a pulled event)"`
	RegistryHosts             []string      `envconfig:"REGISTRY_HOSTS" default:"*.azurecr.io,*.azurecr.cn,*.azurecr.us" desc:"registry hosts lookups may go to, comma-separated host[:port] patterns (*. is one leading label; no port matches 443); an event naming any other host is not looked up, so no event can make the bridge fetch an arbitrary URL"`
	RegistryAuth              string        `envconfig:"REGISTRY_AUTH" default:"entra" desc:"how lookups authenticate: entra (the Azure default credential chain, then ACR's token exchange; the identity needs AcrPull), basic (BRIDGE_REGISTRY_USERNAME, BRIDGE_REGISTRY_PASSWORD: an ACR token or the admin user) or anonymous"`
	RegistryUsername          string        `envconfig:"REGISTRY_USERNAME" desc:"user name of BRIDGE_REGISTRY_AUTH=basic"`
	RegistryPassword          string        `envconfig:"REGISTRY_PASSWORD" desc:"password of BRIDGE_REGISTRY_AUTH=basic"`
	RegistryLookupTimeout     time.Duration `envconfig:"REGISTRY_LOOKUP_TIMEOUT" default:"2s" desc:"longest one lookup may take, waiting for a slot included"`
	RegistryLookupConcurrency int           `envconfig:"REGISTRY_LOOKUP_CONCURRENCY" default:"16" desc:"most registry requests under way at once"`
	RegistryLookupCacheSize   int           `envconfig:"REGISTRY_LOOKUP_CACHE_SIZE" default:"10000" desc:"manifests kept by digest (a manifest never changes), so that a redelivery costs no request"`

	MaxBodyBytes     int64         `envconfig:"MAX_BODY_BYTES" default:"4194304" desc:"largest request body accepted; larger is 413"`
	MaxEvents        int           `envconfig:"MAX_EVENTS" default:"5000" desc:"most events in one request (Event Grid sends at most 5000); more is 413"`
	MaxInflight      int           `envconfig:"MAX_INFLIGHT" default:"256" desc:"most deliveries handled at once; more are answered 503 with Retry-After"`
	MaxInflightBytes int64         `envconfig:"MAX_INFLIGHT_BYTES" default:"268435456" desc:"most request-body bytes handled at once (a body of unknown length counts as BRIDGE_MAX_BODY_BYTES), pulled batches included; a pushed delivery past it is answered 503 with Retry-After, a pulled batch waits"`
	PublishTimeout   time.Duration `envconfig:"PUBLISH_TIMEOUT" default:"10s" desc:"longest wait for the JetStream acks of one request before answering 503 (Event Grid gives up at 30s)"`
	RetryAfter       time.Duration `envconfig:"RETRY_AFTER" default:"5s" desc:"Retry-After sent with every 503"`

	MaxJSONDepth   int `envconfig:"MAX_JSON_DEPTH" default:"64" desc:"deepest JSON nesting accepted in one event; deeper is 400 (or dead-lettered within a batch)"`
	MaxHeaderBytes int `envconfig:"MAX_HEADER_BYTES" default:"65536" desc:"largest request header block accepted; larger is 431"`

	AuthTokens     []string `envconfig:"AUTH_TOKENS" desc:"shared secrets, comma-separated (two during a rotation); when set, a POST must carry one as Authorization: Bearer or in BRIDGE_AUTH_QUERY_PARAM"`
	AuthQueryParam string   `envconfig:"AUTH_QUERY_PARAM" default:"access_token" desc:"query parameter that may carry a BRIDGE_AUTH_TOKENS secret (Event Grid endpoint URLs); empty accepts the header only"`

	EntraTenantID       string        `envconfig:"ENTRA_TENANT_ID" desc:"Microsoft Entra tenant id; with BRIDGE_ENTRA_AUDIENCE, a POST may carry an Entra access token (Event Grid secure webhook delivery)"`
	EntraAudience       []string      `envconfig:"ENTRA_AUDIENCE" desc:"accepted token audiences, comma-separated: the application id URI and/or client id of the bridge's Entra app"`
	EntraRole           string        `envconfig:"ENTRA_ROLE" desc:"app role the token must carry in its roles claim, such as AzureEventGridSecureWebhookSubscriber; empty checks none"`
	EntraJWKSURL        string        `envconfig:"ENTRA_JWKS_URL" desc:"signing keys of the tenant; empty means https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"`
	EntraClockSkew      time.Duration `envconfig:"ENTRA_CLOCK_SKEW" default:"5m" desc:"clock skew allowed on a token's exp and nbf (at most 10m)"`
	EntraKeysRefresh    time.Duration `envconfig:"ENTRA_KEYS_REFRESH" default:"1h" desc:"how often the signing keys are fetched again"`
	EntraKeysMinRefresh time.Duration `envconfig:"ENTRA_KEYS_MIN_REFRESH" default:"1m" desc:"least time between fetches caused by a token with an unknown key id, so bad tokens cannot flood the key endpoint"`

	ReadHeaderTimeout time.Duration `envconfig:"READ_HEADER_TIMEOUT" default:"10s" desc:"time allowed to read request headers"`
	ReadTimeout       time.Duration `envconfig:"READ_TIMEOUT" default:"20s" desc:"time allowed to read a whole request"`
	WriteTimeout      time.Duration `envconfig:"WRITE_TIMEOUT" default:"25s" desc:"time allowed from the end of the request headers to the end of the response; under Event Grid's 30s"`
	IdleTimeout       time.Duration `envconfig:"IDLE_TIMEOUT" default:"2m" desc:"time an idle keep-alive connection is kept open"`
	ShutdownTimeout   time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s" desc:"time allowed on SIGTERM to finish in-flight requests and drain NATS"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"json or text"`
}

// Load reads the configuration through getenv (os.LookupEnv, or a map in tests) and validates it.
// Errors name the variable. A variable set to the empty string is set, not absent: its default does not
// apply.
//
// The values are read as envconfig.Process reads them, by the same tags, but through getenv: Process
// reads the process's environment only, which would keep tests of the whole program from running in
// parallel.
func Load(getenv func(string) (string, bool)) (Config, error) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name := Prefix + "_" + f.Tag.Get("envconfig")
		value, ok := getenv(name)
		if !ok {
			value, ok = f.Tag.Lookup("default")
		}
		if !ok {
			continue
		}
		if err := setField(v.Field(i), value); err != nil {
			return c, fmt.Errorf("%s=%q: %w", name, value, err)
		}
	}
	err := c.Validate()
	// Set to nothing is a mistake (a Secret key gone empty, a template that rendered ""), not a wish to
	// run without authentication: that is leaving the variable out.
	if v, ok := getenv(Prefix + "_AUTH_TOKENS"); ok && len(c.AuthTokens) == 0 {
		err = errors.Join(fmt.Errorf("%s_AUTH_TOKENS is set but holds no token (%q); set a token, or leave the variable out to run without one", Prefix, v), err)
	}
	return c, err
}

// Names are the variables of every setting, prefix included.
func Names() []string {
	t := reflect.TypeFor[Config]()
	names := make([]string, t.NumField())
	for i := range t.NumField() {
		names[i] = Prefix + "_" + t.Field(i).Tag.Get("envconfig")
	}
	return names
}

// UnknownVariables returns a warning for each name that starts with BRIDGE_ and is no setting (a typo
// such as BRIDGE_LISTEN_ADRR, which would otherwise be ignored), with the closest setting when one is
// near.
func UnknownVariables(names []string) []string {
	known := Names()
	var out []string
	for _, name := range names {
		if !strings.HasPrefix(name, Prefix+"_") || slices.Contains(known, name) {
			continue
		}
		best, dist := "", len(name)
		for _, k := range known {
			if d := editDistance(name, k); d < dist {
				best, dist = k, d
			}
		}
		if best != "" && dist <= max(2, len(name)/5) {
			out = append(out, fmt.Sprintf("%s is not a setting and is ignored; did you mean %s?", name, best))
		} else {
			out = append(out, fmt.Sprintf("%s is not a setting and is ignored (bridge -h lists them)", name))
		}
	}
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// setField decodes value into a field of one of the kinds Config has, by envconfig's rules: integers in
// Go's syntax (base prefixes allowed), durations as time.ParseDuration reads them, lists comma-separated
// (an empty or blank value is an empty list).
func setField(field reflect.Value, value string) error {
	switch field.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
		return nil
	case []string:
		var list []string
		if strings.TrimSpace(value) != "" {
			list = strings.Split(value, ",")
		}
		field.Set(reflect.ValueOf(list))
		return nil
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(value)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		field.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(value, 0, field.Type().Bits())
		if err != nil {
			return err
		}
		field.SetInt(n)
	default:
		return fmt.Errorf("a setting of type %s cannot be read", field.Type())
	}
	return nil
}

var (
	subjectPrefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	streamNameRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
)

// Validate checks every setting and reports all problems at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}
	oneOf := func(name, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	positive := func(name string, v int64) {
		if v <= 0 {
			bad(name, "must be positive, got %d", v)
		}
	}

	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		bad("LISTEN_ADDR", "%q is not host:port", c.ListenAddr)
	}
	for name, addr := range map[string]string{"METRICS_ADDR": c.MetricsAddr, "PPROF_ADDR": c.PprofAddr} {
		if _, _, err := net.SplitHostPort(addr); addr != "" && err != nil {
			bad(name, "%q is not host:port", addr)
		}
	}
	if _, err := c.EmbeddedNATSPort(); err != nil {
		bad("EMBEDDED_NATS_ADDR", "%v", err)
	}
	if _, err := c.EmbeddedNATSSyncInterval(); err != nil {
		bad("EMBEDDED_NATS_SYNC", "%v", err)
	}
	if _, err := c.EmbeddedNATSStoreLimit(); err != nil {
		bad("EMBEDDED_NATS_MAX_STORE", "%v", err)
	}
	oneOf("CE_MODE", c.CEMode, "structured", "binary")
	oneOf("NATS_MODE", c.NATSMode, "jetstream", "core")
	oneOf("STREAM_STORAGE", c.StreamStorage, "file", "memory")
	oneOf("ATOMIC_BATCHES", c.AtomicBatches, "auto", "true", "false")
	oneOf("LOG_FORMAT", c.LogFormat, "json", "text")
	if _, err := c.SlogLevel(); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	if !subjectPrefixRE.MatchString(c.SubjectPrefix) {
		bad("SUBJECT_PREFIX", "%q is not one or more subject tokens of [A-Za-z0-9_-]", c.SubjectPrefix)
	}
	if !subjectPrefixRE.MatchString(c.PassthroughPrefix) {
		bad("PASSTHROUGH_PREFIX", "%q is not one or more subject tokens of [A-Za-z0-9_-]", c.PassthroughPrefix)
	}
	if overlaps(c.SubjectPrefix, c.PassthroughPrefix) {
		bad("PASSTHROUGH_PREFIX", "%q overlaps BRIDGE_SUBJECT_PREFIX %q; the two subject trees must be disjoint", c.PassthroughPrefix, c.SubjectPrefix)
	}
	if !streamNameRE.MatchString(c.Stream) {
		bad("STREAM", "%q is not a stream name (letters, digits, _ and -)", c.Stream)
	}
	positive("STREAM_DUPLICATE_WINDOW", int64(c.StreamDuplicateWindow))
	if c.StreamMaxAge < 0 {
		bad("STREAM_MAX_AGE", "must not be negative")
	}
	if c.StreamMaxAge > 0 && c.StreamDuplicateWindow > c.StreamMaxAge {
		bad("STREAM_DUPLICATE_WINDOW", "%s is longer than BRIDGE_STREAM_MAX_AGE %s", c.StreamDuplicateWindow, c.StreamMaxAge)
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		bad("STREAM_REPLICAS", "must be 1 to 5, got %d", c.StreamReplicas)
	}
	positive("EMBEDDED_NATS_MAX_PAYLOAD", int64(c.EmbeddedNATSMaxPayload))
	positive("MAX_BODY_BYTES", c.MaxBodyBytes)
	positive("MAX_EVENTS", int64(c.MaxEvents))
	positive("MAX_INFLIGHT", int64(c.MaxInflight))
	if c.MaxInflightBytes < c.MaxBodyBytes {
		bad("MAX_INFLIGHT_BYTES", "%d is less than BRIDGE_MAX_BODY_BYTES %d, so a body of the largest size could never be admitted", c.MaxInflightBytes, c.MaxBodyBytes)
	}
	positive("PUBLISH_TIMEOUT", int64(c.PublishTimeout))
	positive("RETRY_AFTER", int64(c.RetryAfter))
	positive("READ_HEADER_TIMEOUT", int64(c.ReadHeaderTimeout))
	positive("READ_TIMEOUT", int64(c.ReadTimeout))
	positive("WRITE_TIMEOUT", int64(c.WriteTimeout))
	positive("SHUTDOWN_TIMEOUT", int64(c.ShutdownTimeout))
	if c.WriteTimeout > 0 && c.PublishTimeout >= c.WriteTimeout {
		bad("PUBLISH_TIMEOUT", "%s must be shorter than BRIDGE_WRITE_TIMEOUT %s, or the 503 could not be written", c.PublishTimeout, c.WriteTimeout)
	}
	if c.WriteTimeout >= 30*time.Second {
		bad("WRITE_TIMEOUT", "%s is not under 30s; Event Grid stops waiting at 30s and counts the delivery as failed", c.WriteTimeout)
	}
	positive("IDLE_TIMEOUT", int64(c.IdleTimeout))
	positive("MAX_HEADER_BYTES", int64(c.MaxHeaderBytes))
	if c.MaxJSONDepth < 4 || c.MaxJSONDepth > 10000 {
		bad("MAX_JSON_DEPTH", "must be 4 to 10000, got %d (an ACR event is 3 levels deep)", c.MaxJSONDepth)
	}
	c.validateAuth(bad)
	c.validateLookups(bad)
	c.validateNamespace(bad)
	c.validateTLS(bad)
	if (c.NATSUser == "") != (c.NATSPassword == "") {
		bad("NATS_USER", "BRIDGE_NATS_USER and BRIDGE_NATS_PASSWORD go together")
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		bad("NATS_TLS_CERT", "BRIDGE_NATS_TLS_CERT and BRIDGE_NATS_TLS_KEY go together")
	}
	if c.NATSURL == "" && (c.NATSCreds != "" || c.NATSUser != "" || c.NATSToken != "" || c.NATSTLSCA != "" || c.NATSTLSCert != "") {
		bad("NATS_URL", "NATS credentials or TLS are set but BRIDGE_NATS_URL is empty (the embedded server needs none)")
	}
	return errors.Join(errs...)
}

// validateLookups checks the registry lookup settings, also when lookups are off, so that turning them on
// meets no surprise.
func (c Config) validateLookups(bad func(name, format string, args ...any)) {
	if !slices.Contains([]string{"off", "best-effort", "required"}, c.RegistryLookup) {
		bad("REGISTRY_LOOKUP", "%q is not one of off, best-effort, required", c.RegistryLookup)
	}
	if !slices.Contains([]string{"entra", "basic", "anonymous"}, c.RegistryAuth) {
		bad("REGISTRY_AUTH", "%q is not one of entra, basic, anonymous", c.RegistryAuth)
	}
	if _, err := lookup.ParseHosts(c.RegistryHosts); err != nil {
		bad("REGISTRY_HOSTS", "%v", err)
	}
	if basic := c.RegistryAuth == "basic"; basic != (c.RegistryUsername != "" && c.RegistryPassword != "") || !basic && (c.RegistryUsername != "" || c.RegistryPassword != "") {
		bad("REGISTRY_AUTH", "basic goes with BRIDGE_REGISTRY_USERNAME and BRIDGE_REGISTRY_PASSWORD, both set, and they with basic only")
	}
	if c.RegistryLookupTimeout <= 0 {
		bad("REGISTRY_LOOKUP_TIMEOUT", "must be positive, got %s", c.RegistryLookupTimeout)
	} else if c.RegistryLookup != "off" && c.WriteTimeout > 0 && c.RegistryLookupTimeout+c.PublishTimeout >= c.WriteTimeout {
		bad("REGISTRY_LOOKUP_TIMEOUT", "%s and BRIDGE_PUBLISH_TIMEOUT %s together must be shorter than BRIDGE_WRITE_TIMEOUT %s, or the answer could not be written", c.RegistryLookupTimeout, c.PublishTimeout, c.WriteTimeout)
	}
	if c.RegistryLookupConcurrency < 1 || c.RegistryLookupConcurrency > 1024 {
		bad("REGISTRY_LOOKUP_CONCURRENCY", "must be 1 to 1024, got %d", c.RegistryLookupConcurrency)
	}
	if c.RegistryLookupCacheSize < 0 {
		bad("REGISTRY_LOOKUP_CACHE_SIZE", "must not be negative, got %d", c.RegistryLookupCacheSize)
	}
}

// LookupsEnabled reports whether pushed manifests are looked up in their registry.
func (c Config) LookupsEnabled() bool { return c.RegistryLookup != "off" }

// validateNamespace checks the pull settings: all three names or none, and limits as the namespace API has them.
func (c Config) validateNamespace(bad func(name, format string, args ...any)) {
	set := 0
	for _, v := range []string{c.NamespaceEndpoint, c.NamespaceTopic, c.NamespaceSubscription} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		bad("NAMESPACE_ENDPOINT", "BRIDGE_NAMESPACE_ENDPOINT, BRIDGE_NAMESPACE_TOPIC and BRIDGE_NAMESPACE_SUBSCRIPTION go together (%d of 3 set)", set)
	}
	if c.NamespaceEndpoint != "" {
		if u, err := url.Parse(c.NamespaceEndpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("NAMESPACE_ENDPOINT", "%q is not an https URL", c.NamespaceEndpoint)
		}
	}
	if c.NamespaceReceivers < 1 || c.NamespaceReceivers > 64 {
		bad("NAMESPACE_RECEIVERS", "must be 1 to 64, got %d", c.NamespaceReceivers)
	}
	if c.NamespaceMaxEvents < 1 || c.NamespaceMaxEvents > 100 {
		bad("NAMESPACE_MAX_EVENTS", "must be 1 to 100, got %d", c.NamespaceMaxEvents)
	}
	if c.NamespaceMaxWait < 10*time.Second || c.NamespaceMaxWait > 120*time.Second || c.NamespaceMaxWait%time.Second != 0 {
		bad("NAMESPACE_MAX_WAIT", "must be whole seconds from 10s to 120s, got %s", c.NamespaceMaxWait)
	}
	switch c.NamespaceReleaseDelay {
	case 0, 10 * time.Second, time.Minute, 10 * time.Minute, time.Hour:
	default:
		bad("NAMESPACE_RELEASE_DELAY", "%s is not one of 0s, 10s, 60s, 10m, 1h", c.NamespaceReleaseDelay)
	}
}

// validateTLS checks the HTTPS settings: a certificate from files or from ACME, not both, and each whole.
func (c Config) validateTLS(bad func(name, format string, args ...any)) {
	files := c.TLSCertFile != "" || c.TLSKeyFile != ""
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE", "BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE go together")
	}
	if files && len(c.ACMEDomains) > 0 {
		bad("ACME_DOMAINS", "BRIDGE_ACME_DOMAINS and BRIDGE_TLS_CERT_FILE/BRIDGE_TLS_KEY_FILE are two ways to get a certificate; set one")
	}
	if !files && len(c.ACMEDomains) == 0 && (c.ACMEEmail != "") {
		bad("ACME_EMAIL", "set without BRIDGE_ACME_DOMAINS")
	}
	for _, d := range c.ACMEDomains {
		if d == "" || strings.ContainsAny(d, "/: *") {
			bad("ACME_DOMAINS", "%q is not a DNS name (no wildcards: TLS-ALPN-01 cannot validate them)", d)
		}
	}
	if len(c.ACMEDomains) > 0 {
		if u, err := url.Parse(c.ACMECA); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("ACME_CA", "%q is not an https URL", c.ACMECA)
		}
		if c.ACMECacheDir == "" {
			bad("ACME_CACHE_DIR", "must not be empty: the account and certificates must outlive a restart")
		}
	}
	if c.TLSReloadInterval <= 0 || c.TLSReloadInterval > 30*time.Second {
		bad("TLS_RELOAD_INTERVAL", "must be more than 0s and at most 30s, got %s", c.TLSReloadInterval)
	}
}

// TLSFiles reports whether HTTPS is served with a certificate from files.
func (c Config) TLSFiles() bool { return c.TLSCertFile != "" }

// ACMEEnabled reports whether HTTPS is served with certificates from an ACME CA.
func (c Config) ACMEEnabled() bool { return len(c.ACMEDomains) > 0 }

// NamespaceEnabled reports whether events are pulled from an Event Grid namespace.
func (c Config) NamespaceEnabled() bool { return c.NamespaceEndpoint != "" }

// placeholderTokens are the stand-ins for a token in this project's manifests and docs: known to all, so
// never a secret.
var placeholderTokens = []string{"replace-with-a-long-random-secret"}

// minTokenLen keeps shared secrets out of reach of guessing: 16 random characters or more.
const minTokenLen = 16

var (
	queryParamRE = regexp.MustCompile(`^[A-Za-z0-9_.~-]+$`)
	tenantIDRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// validateAuth checks the authentication settings. Its messages never repeat a secret.
func (c Config) validateAuth(bad func(name, format string, args ...any)) {
	for i, t := range c.AuthTokens {
		switch {
		case slices.Contains(placeholderTokens, strings.ToLower(t)):
			bad("AUTH_TOKENS", "token %d of %d is a placeholder from this project's examples, which anyone can read; make one: openssl rand -hex 32", i+1, len(c.AuthTokens))
		case len(t) < minTokenLen:
			bad("AUTH_TOKENS", "token %d of %d is %d characters long; use at least %d random characters", i+1, len(c.AuthTokens), len(t), minTokenLen)
		case strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			bad("AUTH_TOKENS", "token %d of %d contains a space or control character", i+1, len(c.AuthTokens))
		}
	}
	if c.AuthQueryParam != "" && !queryParamRE.MatchString(c.AuthQueryParam) {
		bad("AUTH_QUERY_PARAM", "%q is not a plain query parameter name", c.AuthQueryParam)
	}
	if (c.EntraTenantID == "") != (len(c.EntraAudience) == 0) {
		bad("ENTRA_TENANT_ID", "BRIDGE_ENTRA_TENANT_ID and BRIDGE_ENTRA_AUDIENCE go together")
	}
	if c.EntraTenantID != "" && !tenantIDRE.MatchString(c.EntraTenantID) {
		bad("ENTRA_TENANT_ID", "%q is not a tenant id (a GUID; token issuers name the tenant by its id, not its domain)", c.EntraTenantID)
	}
	for _, a := range c.EntraAudience {
		if a == "" {
			bad("ENTRA_AUDIENCE", "has an empty entry")
		}
	}
	if c.EntraJWKSURL != "" {
		if err := checkKeysURL(c.EntraJWKSURL); err != nil {
			bad("ENTRA_JWKS_URL", "%v", err)
		}
	}
	if c.EntraClockSkew < 0 || c.EntraClockSkew > 10*time.Minute {
		bad("ENTRA_CLOCK_SKEW", "must be 0 to 10m, got %s", c.EntraClockSkew)
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, "must be positive, got %s", d)
		}
	}
	positive("ENTRA_KEYS_REFRESH", c.EntraKeysRefresh)
	positive("ENTRA_KEYS_MIN_REFRESH", c.EntraKeysMinRefresh)
	if c.EntraKeysMinRefresh > c.EntraKeysRefresh {
		bad("ENTRA_KEYS_MIN_REFRESH", "%s is longer than BRIDGE_ENTRA_KEYS_REFRESH %s", c.EntraKeysMinRefresh, c.EntraKeysRefresh)
	}
}

// checkKeysURL accepts https, and plain http only to a loopback address (a local key server in tests).
func checkKeysURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q is not https (plain http is accepted for loopback addresses only)", raw)
}

// AuthEnabled reports whether POSTs must authenticate.
func (c Config) AuthEnabled() bool { return len(c.AuthTokens) > 0 || c.EntraEnabled() }

// EntraEnabled reports whether Entra ID tokens are accepted.
func (c Config) EntraEnabled() bool { return c.EntraTenantID != "" }

// EntraKeysURL returns the URL of the tenant's signing keys.
func (c Config) EntraKeysURL() string {
	if c.EntraJWKSURL != "" {
		return c.EntraJWKSURL
	}
	return "https://login.microsoftonline.com/" + c.EntraTenantID + "/discovery/v2.0/keys"
}

// overlaps reports whether one dotted prefix is the other or a token-wise prefix of it.
func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

// EmbeddedNATSPort returns the port of EmbeddedNATSAddr; 0 means any free port.
func (c Config) EmbeddedNATSPort() (int, error) {
	_, p, err := net.SplitHostPort(c.EmbeddedNATSAddr)
	if err != nil {
		return 0, fmt.Errorf("%q is not host:port", c.EmbeddedNATSAddr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("%q has no valid port", c.EmbeddedNATSAddr)
	}
	return port, nil
}

// EmbeddedNATSSyncInterval returns how often the embedded server syncs JetStream writes to disk; 0 means
// always, each write before its PubAck.
func (c Config) EmbeddedNATSSyncInterval() (time.Duration, error) {
	if c.EmbeddedNATSSync == "always" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.EmbeddedNATSSync)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is neither always nor a positive duration such as 2m", c.EmbeddedNATSSync)
	}
	return d, nil
}

// StoreLimit is the embedded server's store limit: Bytes, or Share of the room on the store's disk.
type StoreLimit struct {
	Bytes int64
	Share float64
}

// EmbeddedNATSStoreLimit parses EmbeddedNATSMaxStore.
func (c Config) EmbeddedNATSStoreLimit() (StoreLimit, error) {
	v := strings.TrimSpace(c.EmbeddedNATSMaxStore)
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		share, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || share <= 0 || share > 100 {
			return StoreLimit{}, fmt.Errorf("%q is not a share of the disk from 1%% to 100%%", c.EmbeddedNATSMaxStore)
		}
		return StoreLimit{Share: share / 100}, nil
	}
	n, err := units.RAMInBytes(v)
	if err != nil || n < 1<<20 {
		return StoreLimit{}, fmt.Errorf("%q is neither a size of 1MiB or more (such as 20GiB) nor a share of the disk (such as 75%%)", c.EmbeddedNATSMaxStore)
	}
	return StoreLimit{Bytes: n}, nil
}

// AtomicBatchPolicy says when multi-event deliveries are published as atomic batches: "always", "never",
// or "replicated" (when the stream has more than one replica). On a single server a batch is staged in
// files of its own, which pays only where the server syncs every write (one sync per batch instead of one
// per event); on a replicated stream a batch is one proposal to the stream's group, which pays either way.
// The bridge knows the embedded server's sync policy, not another server's.
func (c Config) AtomicBatchPolicy() string {
	switch c.AtomicBatches {
	case "true":
		return "always"
	case "false":
		return "never"
	}
	if every, err := c.EmbeddedNATSSyncInterval(); c.NATSURL == "" && err == nil && every == 0 {
		return "always"
	}
	return "replicated"
}

// SlogLevel returns LogLevel as a slog.Level.
func (c Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// Usage writes every variable with its type, default and description.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tTYPE\tDEFAULT\tDESCRIPTION")
	err := envconfig.Usagef(Prefix, &Config{}, tw,
		`{{range .}}{{usage_key .}}	{{usage_type .}}	{{usage_default .}}	{{usage_description .}}
{{end}}`)
	if err != nil {
		return err
	}
	return tw.Flush()
}
