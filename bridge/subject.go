package bridge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

// MaxSubjectLen bounds the subjects the bridge builds. NATS refuses a protocol line longer than its
// max_control_line (4 KiB by default) by closing the connection, so a hostile repository name must never
// get that far; ACR repository names are far shorter.
const MaxSubjectLen = 2048

// ErrSubjectTooLong is returned for a subject over MaxSubjectLen bytes.
var ErrSubjectTooLong = errors.New("subject too long")

// Subjects names the NATS subjects the bridge publishes to: acrevent's grammar under Prefix for ACR
// events, pings and dead letters, and {passthrough}.{type tokens} for every other event type.
type Subjects struct {
	Prefix      string
	Passthrough string
}

// verbs are the {verb} tokens of each envelope type but the ping.
var verbs = map[string]string{
	acrevent.TypeImagePushed:      "pushed",
	acrevent.TypeImageDeleted:     "deleted",
	acrevent.TypeImageQuarantined: "quarantined",
	acrevent.TypeChartPushed:      "pushed",
	acrevent.TypeChartDeleted:     "deleted",
}

// For returns the subject of an envelope: {prefix}.{artifact}.{verb}.{registry}.{repository tokens}, the
// artifact token being data.artifact.kind; {prefix}.ping.{registry} for a ping.
func (s Subjects) For(env *acrevent.Envelope) (string, error) {
	registry := env.Data.Registry
	if registry == acrevent.EmptyToken {
		// The registry of an event that names none; registry names are alphanumeric, never "_".
		registry = ""
	}
	var repo string
	if env.Data.Target != nil {
		repo = env.Data.Target.Repository
	}
	artifact := artifactKind(env)
	verb, ok := verbs[env.Type]
	switch {
	case env.Type == acrevent.TypePing:
		artifact, verb, repo = "ping", "", ""
	case !ok:
		return "", fmt.Errorf("no subject for event type %q", env.Type)
	}
	// One allocation: room for every byte escaped, four dots, and "_" for a registry and a repository
	// that are missing.
	var b strings.Builder
	b.Grow(len(s.Prefix) + 3*len(artifact) + len(verb) + 3*len(registry) + 3*len(repo) + 6)
	b.WriteString(s.Prefix)
	b.WriteByte('.')
	acrevent.WriteToken(&b, artifact)
	b.WriteByte('.')
	if env.Type != acrevent.TypePing {
		b.WriteString(verb)
		b.WriteByte('.')
	}
	acrevent.WriteToken(&b, registry)
	if env.Type != acrevent.TypePing {
		b.WriteByte('.')
		acrevent.WriteRepository(&b, repo)
	}
	return checkLen(b.String())
}

// artifactKind is the {artifact} token of an envelope: its data.artifact.kind, else what its type says
// (a chart for chart events, an image for the rest).
func artifactKind(env *acrevent.Envelope) string {
	switch {
	case env.Data.Artifact != nil:
		return env.Data.Artifact.Kind
	case env.Type == acrevent.TypeChartPushed, env.Type == acrevent.TypeChartDeleted:
		return acrevent.KindChart
	}
	return acrevent.KindImage
}

// Template is the subject of env with its registry and repository tokens written {registry} and
// {repository}: acr.image.pushed.{registry}.{repository}, acr.ping.{registry}. Traces name publish spans
// by it, so that span names stay few whatever the repositories.
func (s Subjects) Template(env *acrevent.Envelope) string {
	if env.Type == acrevent.TypePing {
		return s.Prefix + ".ping.{registry}"
	}
	return s.Prefix + "." + acrevent.EncodeToken(artifactKind(env)) + "." + verbs[env.Type] + ".{registry}.{repository}"
}

// DeadLetter returns the dead-letter subject.
func (s Subjects) DeadLetter() string { return s.Prefix + ".deadletter" }

// ForPassthrough returns the subject of an event that is not an ACR event: the passthrough prefix and
// the event type split on "." (eventgrid.Microsoft.Storage.BlobCreated), each part escaped like a
// repository component.
func (s Subjects) ForPassthrough(eventType string) (string, error) {
	parts := strings.Split(eventType, ".")
	for i, p := range parts {
		parts[i] = acrevent.EncodeToken(p)
	}
	return checkLen(s.Passthrough + "." + strings.Join(parts, "."))
}

func checkLen(subject string) (string, error) {
	if len(subject) > MaxSubjectLen {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrSubjectTooLong, len(subject), MaxSubjectLen)
	}
	return subject, nil
}
