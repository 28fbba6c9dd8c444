package acrevent_test

import (
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

// Every envelope type, and no other, is an envelope's.
func TestIsEnvelopeType(t *testing.T) {
	for _, typ := range []string{acrevent.TypeImagePushed, acrevent.TypeImageDeleted, acrevent.TypeChartPushed,
		acrevent.TypeChartDeleted, acrevent.TypeImageQuarantined, acrevent.TypePing} {
		assert.True(t, acrevent.IsEnvelopeType(typ), typ)
	}
	for _, typ := range []string{"", "Microsoft.Storage.BlobCreated", "Microsoft.ContainerRegistry.ImageSigned"} {
		assert.False(t, acrevent.IsEnvelopeType(typ), typ)
	}
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
		{"acr.signature.pushed.myregistry.team.web", acrevent.SubjectParts{Artifact: "signature", Verb: "pushed", Registry: "myregistry", Repository: "team/web"}},
		{"acr.manifest.pushed.r.a", acrevent.SubjectParts{Artifact: "manifest", Verb: "pushed", Registry: "r", Repository: "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			got, err := s.ParseSubject(tc.subject)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	for _, bad := range []string{"other.image.pushed.r.x", "acr.image.pushed", "acr.image.pushed.r.a*b", "acr",
		"acr.widget.pushed.r.a", "acr.image.tagged.r.a"} {
		_, err := s.ParseSubject(bad)
		assert.Error(t, err, bad)
	}
}
