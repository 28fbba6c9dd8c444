package bridge_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
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
			got := bridge.EncodeRepository(tc.repo)
			assert.Equal(t, tc.tokens, got)
			back, err := bridge.DecodeRepository(got)
			require.NoError(t, err)
			assert.Equal(t, tc.repo, back)
		})
	}
}

func TestDecodeTokenRejectsWhatEncodeNeverWrites(t *testing.T) {
	for _, tok := range []string{"", "a.b", "*", ">", "%", "%2", "%zz", "%2e", "a b"} {
		_, err := bridge.DecodeToken(tok)
		assert.ErrorIs(t, err, bridge.ErrBadToken, "token %q", tok)
	}
}

func TestSubjects(t *testing.T) {
	s := bridge.Subjects{Prefix: "acr", Passthrough: "eventgrid"}
	env := func(typ, registry, repo string) *bridge.Envelope {
		e := &bridge.Envelope{Type: typ, Data: bridge.EventData{Registry: registry}}
		if repo != "-" {
			e.Data.Target = &bridge.Target{Repository: repo}
		}
		return e
	}
	tests := []struct {
		name    string
		env     *bridge.Envelope
		subject string
	}{
		{"pushed", env(bridge.TypeImagePushed, "myregistry", "hello-world"), "acr.image.pushed.myregistry.hello-world"},
		{"deleted nested", env(bridge.TypeImageDeleted, "myregistry", "team/web"), "acr.image.deleted.myregistry.team.web"},
		{"quarantined", env(bridge.TypeImageQuarantined, "myregistry", "hello-world"), "acr.image.quarantined.myregistry.hello-world"},
		{"chart pushed", env(bridge.TypeChartPushed, "myregistry", "repo"), "acr.chart.pushed.myregistry.repo"},
		{"chart deleted", env(bridge.TypeChartDeleted, "myregistry", "repo"), "acr.chart.deleted.myregistry.repo"},
		{"ping", env(bridge.TypePing, "myregistry", "-"), "acr.ping.myregistry"},
		{"no registry", env(bridge.TypeImagePushed, "_", "a"), "acr.image.pushed._.a"},
		{"no target", env(bridge.TypeImagePushed, "r", "-"), "acr.image.pushed.r._"},
		{"hostile registry", env(bridge.TypeImagePushed, "a.b>*", "x"), "acr.image.pushed.a%2Eb%3E%2A.x"},
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

	_, err = s.For(env(bridge.TypeImagePushed, "r", strings.Repeat("/", 2000)))
	assert.ErrorIs(t, err, bridge.ErrSubjectTooLong)
	_, err = s.For(&bridge.Envelope{Type: "Microsoft.Storage.BlobCreated"})
	assert.Error(t, err)
}

func TestParseSubject(t *testing.T) {
	s := bridge.Subjects{Prefix: "acr"}
	tests := []struct {
		subject string
		want    bridge.SubjectParts
	}{
		{"acr.image.pushed.myregistry.team.web%2Eapi", bridge.SubjectParts{Artifact: "image", Verb: "pushed", Registry: "myregistry", Repository: "team/web.api"}},
		{"acr.chart.deleted._._", bridge.SubjectParts{Artifact: "chart", Verb: "deleted"}},
		{"acr.ping.reg", bridge.SubjectParts{Verb: "ping", Registry: "reg"}},
		{"acr.deadletter", bridge.SubjectParts{Verb: "deadletter"}},
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
