package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRegistryFromSource(t *testing.T) {
	tests := []struct{ source, registry, connected string }{
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/MyRegistry", "MyRegistry", ""},
		{"/x/REGISTRIES/r1/CONNECTEDREGISTRIES/edge?api=1", "r1", "edge"},
		{"/x/registries/r1/other/thing", "r1", ""},
		{"/x/registries", "", ""},
		{"", "", ""},
		// Letters whose lower case is longer or shorter than they are (İ, Ⱥ, K): offsets into a lowered
		// copy would not be offsets into the source, and once panicked.
		{"İİİİİİİİİİİİ/registries/", "", ""},
		{"ȺȺȺȺ/registries/abc", "abc", ""},
		{"/registries/ȺȺȺȺ/connectedRegistries/x", "ȺȺȺȺ", "x"},
		{"/regiſtries/r", "", ""}, // ſ folds to s in Unicode, not in ASCII
	}
	for _, tc := range tests {
		registry, connected := registryFromSource(tc.source)
		assert.Equal(t, tc.registry, registry, tc.source)
		assert.Equal(t, tc.connected, connected, tc.source)
	}
}
