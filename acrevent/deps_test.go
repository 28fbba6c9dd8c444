package acrevent_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nonStandardDeps lists the packages outside the standard library that pkg builds, itself included.
func nonStandardDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// A consumer builds the standard library, nats.go and what nats.go itself needs, and nothing of the
// bridge's own dependencies: the test fails when acrevent's imports grow beyond that.
func TestImportsOnlyStandardLibraryAndNATS(t *testing.T) {
	natsDeps := nonStandardDeps(t, "github.com/nats-io/nats.go")
	for _, dep := range nonStandardDeps(t, "github.com/natsbridge/acr-nats-bridge/acrevent") {
		if dep == "github.com/natsbridge/acr-nats-bridge/acrevent" {
			continue
		}
		assert.True(t, slices.Contains(natsDeps, dep), "acrevent depends on %s, which is not nats.go's", dep)
	}
}
