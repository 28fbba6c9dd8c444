package bridge_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/natsbridge/acr-nats-bridge/bridge"
)

func TestNormalizeTime(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"2017-11-17T16:52:01.343145347Z", "2017-11-17T16:52:01.343145347Z", true},
		{"2019-03-05T23:45:31.2614267Z", "2019-03-05T23:45:31.2614267Z", true},
		{"2019-03-12T22:16:31.0087496+00:00", "2019-03-12T22:16:31.0087496Z", true},
		{"2019-03-12T22:16:31.5000000Z", "2019-03-12T22:16:31.5000000Z", true},
		{"2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00Z", true},
		{"2024-05-01T00:30:00.12-01:30", "2024-05-01T02:00:00.12Z", true},
		{"2024-05-01T12:00:00.1234567", "2024-05-01T12:00:00.1234567Z", true},
		{"2024-05-01T12:00:00", "2024-05-01T12:00:00Z", true},
		{"2024-05-01t12:00:00z", "2024-05-01T12:00:00Z", true},
		{"2024-05-01 12:00:00Z", "2024-05-01T12:00:00Z", true},
		{"2024-05-01T12:00:00+0200", "2024-05-01T10:00:00Z", true},
		{"2024-05-01T12:00:00.123456789123Z", "2024-05-01T12:00:00.123456789Z", true},
		{"019-03-12T22:42:08.7034064Z", "", false},
		{"2024-13-01T12:00:00Z", "", false},
		{"2024-05-01T12:00:00.Z", "", false},
		{"2024-05-01", "", false},
		{"", "", false},
		{"yesterday", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := bridge.NormalizeTime(tc.in)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}
