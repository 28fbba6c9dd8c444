package acrevent_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// Every Go block of the docs is a piece of a run example: the same lines, in order, in example_test.go,
// whose examples check what they print.
func TestDocsGoBlocksAreRunExamples(t *testing.T) {
	examples, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	norm := func(s string) string {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if l = strings.Join(strings.Fields(l), " "); l != "" {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	source := norm(string(examples))
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	require.NoError(t, err)
	blocks := 0
	for _, f := range append(docs, filepath.Join("..", "README.md")) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
			blocks++
			assert.Contains(t, source, norm(m[1]), "%s: a Go block that is no part of acrevent's examples", filepath.Base(f))
		}
	}
	assert.Positive(t, blocks)
}
