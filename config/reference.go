package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
)

//go:generate go run ./internal/reference ../docs/configuration.md

// sections heads the reference's tables: a new one starts at each of these variables, in the order of
// Config's fields.
var sections = map[string]string{
	"LISTEN_ADDR":         "HTTP, HTTPS and the listeners",
	"DEFAULT_REGISTRY":    "Events and subjects",
	"NATS_URL":            "NATS",
	"EMBEDDED_NATS_ADDR":  "The embedded NATS server (BRIDGE_NATS_URL empty)",
	"STREAM":              "The JetStream stream",
	"NAMESPACE_ENDPOINT":  "Pulling from an Event Grid namespace",
	"REGISTRY_LOOKUP":     "Registry lookups (what was pushed)",
	"MAX_BODY_BYTES":      "Limits",
	"AUTH_TOKENS":         "Authentication",
	"READ_HEADER_TIMEOUT": "Timeouts",
	"LOG_LEVEL":           "Logs",
}

// WriteReference writes docs/configuration.md: every variable with its type, default and description,
// from the same struct tags that Load reads and Usage prints.
func WriteReference(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`# Configuration

<!-- Generated from config/config.go by "go generate ./config"; a test fails when it differs. -->

The bridge reads environment variables only, all prefixed ` + "`" + Prefix + "_`" + `; ` + "`bridge -h`" + ` prints the same list.
An invalid value stops start-up with a message naming the variable. Lists are comma-separated;
durations are Go durations (` + "`500ms`, `10s`, `2m`, `168h`" + `).

Tracing is configured by the standard OpenTelemetry variables instead (` + "`OTEL_TRACES_EXPORTER`" + `, off unless set;
` + "`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`" + `...): see [Operations](operations.md#tracing).
`)
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := f.Tag.Get("envconfig")
		if title, ok := sections[key]; ok {
			fmt.Fprintf(&b, "\n## %s\n\n| variable | type | default | what it does |\n|---|---|---|---|\n", title)
		} else if i == 0 {
			return fmt.Errorf("config: the first field, %s, starts no section", f.Name)
		}
		def := f.Tag.Get("default")
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s_%s` | %s | %s | %s |\n", Prefix, key, typeName(f.Type), def,
			strings.ReplaceAll(f.Tag.Get("desc"), "|", `\|`))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// typeName names a field's type for people.
func typeName(t reflect.Type) string {
	switch {
	case t.String() == "time.Duration":
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Bool:
		return "true/false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	}
	return "string"
}
