package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	notAnchor = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
)

// anchors are the fragment names of a Markdown file's headings, as GitHub writes them.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(text, -1) {
		a := strings.ToLower(strings.TrimSpace(m[1]))
		a = notAnchor.ReplaceAllString(a, "")
		out[strings.ReplaceAll(a, " ", "-")] = true
	}
	return out
}

// TestDocsLinks follows every relative link of the README and docs/: the file exists, and so does the
// heading it points at. The README stays the short path in (the two commands, the walkthrough, links).
func TestDocsLinks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, filepath.Join("..", "README.md"))
	links := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
				continue
			}
			links++
			path, frag, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			d, err := os.ReadFile(dest)
			if !assert.NoError(t, err, "%s links to %s", f, target) {
				continue
			}
			if frag != "" {
				assert.True(t, anchors(string(d))[frag], "%s links to %s: no such heading", f, target)
			}
		}
	}
	assert.Greater(t, links, 20)

	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	assert.Less(t, len(readme), 15<<10, "the README stays under 15 KB; the rest belongs in docs/")
	firstScreen := strings.Join(strings.SplitN(string(readme), "\n", 25)[:24], "\n")
	assert.Contains(t, firstScreen, "go run ./cmd/bridge ")
	assert.Contains(t, firstScreen, "go test -race ./...")
	ci, err := os.ReadFile(filepath.Join("..", ".ci", "run"))
	require.NoError(t, err)
	assert.Contains(t, string(ci), "\ngo test -race ./...\n", "CI runs the README's test command")
}

// The docs' nats CLI commands run where there is no terminal (a script, CI, a pipe): no paging view, and a
// consumer add that takes its defaults rather than asking.
func TestDocsNATSCommandsNeedNoTerminal(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, filepath.Join("..", "README.md"), filepath.Join("..", "deployments", "helm", "acr-nats-bridge", "templates", "NOTES.txt"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, line := range strings.Split(string(b), "\n") {
			assert.NotContains(t, line, "nats stream view", "%s:%d pages, which wants a terminal", filepath.Base(f), i+1)
			if strings.Contains(line, "nats consumer add") {
				assert.Contains(t, line, "--defaults", "%s:%d prompts without --defaults", filepath.Base(f), i+1)
			}
		}
	}
}
