package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCanonicalTime(t *testing.T) {
	for _, s := range []string{"2017-11-17T16:52:01.343145347Z", "2024-02-29T23:59:59Z", "0000-01-01T00:00:00.0Z"} {
		assert.True(t, canonical(s), s)
	}
	for _, s := range []string{"2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z",
		"2024-05-01T12:00:60Z", "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00.1234567890Z", "2024-05-01T12:00:00+00:00",
		"2024-05-01 12:00:00Z", "2024-05-01T12:00:00z", "2024-05-01T12:00:00.12a4Z", "2024-5-01T12:00:00Z", "+024-05-01T12:00:00Z"} {
		assert.False(t, canonical(s), s)
	}
}

// FuzzCanonicalTime: a time the fast path keeps as it is is one the full parse normalises to itself.
func FuzzCanonicalTime(f *testing.F) {
	for _, s := range []string{"2017-11-17T16:52:01.343145347Z", "2024-02-29T23:59:59Z", "2023-02-29T00:00:00Z", "2024-05-01T12:00:00.1Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !canonical(s) {
			return
		}
		got, ok := normalizeTime(s)
		require.True(t, ok, s)
		require.Equal(t, s, got)
	})
}
