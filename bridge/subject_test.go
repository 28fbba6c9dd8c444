package bridge_test

import (
	"cmp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
)

func TestSubjects(t *testing.T) {
	s := bridge.Subjects{Prefix: "acr", Passthrough: "eventgrid"}
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
			// What the bridge builds, a consumer's parser reads back.
			parts, err := acrevent.Subjects{Prefix: "acr"}.ParseSubject(got)
			require.NoError(t, err)
			assert.Equal(t, tc.env.Data.Registry, cmp.Or(parts.Registry, acrevent.EmptyToken))
			if tc.env.Data.Target != nil {
				assert.Equal(t, tc.env.Data.Target.Repository, parts.Repository)
			}
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
	assert.ErrorIs(t, err, bridge.ErrSubjectTooLong)
	_, err = s.For(&acrevent.Envelope{Type: "Microsoft.Storage.BlobCreated"})
	assert.Error(t, err)
}
