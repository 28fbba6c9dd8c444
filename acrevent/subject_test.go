package acrevent_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

func TestEncodeRepository(t *testing.T) {
	tests := []struct{ repo, tokens string }{
		{"hello-world", "hello-world"},
		{"team/web", "team.web"},
		{"team/web.api", "team.web%2Eapi"},
		{"*", "%2A"},
		{">", "%3E"},
		{"a b", "a%20b"},
		{"$SYS", "%24SYS"},
		{"../etc", "%2E%2E.etc"},
		{"ü", "%C3%BC"},
		{"tab\there", "tab%09here"},
		{"100%", "100%25"},
		{"", "_"},
		{"_", "%5F"},
		{"a/_/b", "a.%5F.b"},
		{"a//b", "a._.b"},
		{"/", "_._"},
		{"under_score-dash", "under_score-dash"},
		{"UPPER/Case", "UPPER.Case"},
	}
	for _, tc := range tests {
		t.Run(tc.repo, func(t *testing.T) {
			got := acrevent.EncodeRepository(tc.repo)
			assert.Equal(t, tc.tokens, got)
			back, err := acrevent.DecodeRepository(got)
			require.NoError(t, err)
			assert.Equal(t, tc.repo, back)
		})
	}
}

func TestDecodeTokenRejectsWhatEncodeNeverWrites(t *testing.T) {
	for _, tok := range []string{"", "a.b", "*", ">", "%", "%2", "%zz", "%2e", "a b"} {
		_, err := acrevent.DecodeToken(tok)
		assert.ErrorIs(t, err, acrevent.ErrBadToken, "token %q", tok)
	}
}

func TestSubjects(t *testing.T) {
	s := acrevent.Subjects{Prefix: "acr", Passthrough: "eventgrid"}
	env := func(typ, registry, repo string) *acrevent.Envelope {
		e := &acrevent.Envelope{Type: typ, Data: acrevent.EventData{Registry: registry}}
		if repo != "-" {
			e.Data.Target = &acrevent.Target{Repository: repo}
		}
		return e
	}
	tests := []struct {
		name    string
		env     *acrevent.Envelope
		subject string
	}{
		{"pushed", env(acrevent.TypeImagePushed, "myregistry", "hello-world"), "acr.image.pushed.myregistry.hello-world"},
		{"deleted nested", env(acrevent.TypeImageDeleted, "myregistry", "team/web"), "acr.image.deleted.myregistry.team.web"},
		{"quarantined", env(acrevent.TypeImageQuarantined, "myregistry", "hello-world"), "acr.image.quarantined.myregistry.hello-world"},
		{"chart pushed", env(acrevent.TypeChartPushed, "myregistry", "repo"), "acr.chart.pushed.myregistry.repo"},
		{"chart deleted", env(acrevent.TypeChartDeleted, "myregistry", "repo"), "acr.chart.deleted.myregistry.repo"},
		{"ping", env(acrevent.TypePing, "myregistry", "-"), "acr.ping.myregistry"},
		{"no registry", env(acrevent.TypeImagePushed, "_", "a"), "acr.image.pushed._.a"},
		{"no target", env(acrevent.TypeImagePushed, "r", "-"), "acr.image.pushed.r._"},
		{"hostile registry", env(acrevent.TypeImagePushed, "a.b>*", "x"), "acr.image.pushed.a%2Eb%3E%2A.x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.For(tc.env)
			require.NoError(t, err)
			assert.Equal(t, tc.subject, got)
		})
	}
	assert.Equal(t, "acr.deadletter", s.DeadLetter())

	pt, err := s.ForPassthrough("Microsoft.Storage.BlobCreated")
	require.NoError(t, err)
	assert.Equal(t, "eventgrid.Microsoft.Storage.BlobCreated", pt)
	pt, err = s.ForPassthrough("a..b*")
	require.NoError(t, err)
	assert.Equal(t, "eventgrid.a._.b%2A", pt)

	_, err = s.For(env(acrevent.TypeImagePushed, "r", strings.Repeat("/", 2000)))
	assert.ErrorIs(t, err, acrevent.ErrSubjectTooLong)
	_, err = s.For(&acrevent.Envelope{Type: "Microsoft.Storage.BlobCreated"})
	assert.Error(t, err)
}

func TestParseSubject(t *testing.T) {
	s := acrevent.Subjects{Prefix: "acr"}
	tests := []struct {
		subject string
		want    acrevent.SubjectParts
	}{
		{"acr.image.pushed.myregistry.team.web%2Eapi", acrevent.SubjectParts{Artifact: "image", Verb: "pushed", Registry: "myregistry", Repository: "team/web.api"}},
		{"acr.chart.deleted._._", acrevent.SubjectParts{Artifact: "chart", Verb: "deleted"}},
		{"acr.ping.reg", acrevent.SubjectParts{Verb: "ping", Registry: "reg"}},
		{"acr.deadletter", acrevent.SubjectParts{Verb: "deadletter"}},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			got, err := s.ParseSubject(tc.subject)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	for _, bad := range []string{"other.image.pushed.r.x", "acr.image.pushed", "acr.image.pushed.r.a*b", "acr"} {
		_, err := s.ParseSubject(bad)
		assert.Error(t, err, bad)
	}
}
