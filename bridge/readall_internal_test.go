package bridge

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadAll: bodies of every size come back whole, with or without a Content-Length, and a body of
// announced length under 64 KiB costs one allocation.
func TestReadAll(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 738, 64<<10 - 1, 64 << 10, 200 << 10} {
		body := bytes.Repeat([]byte("x"), n)
		for _, cl := range []int64{int64(n), -1} {
			got, err := readAll(bytes.NewReader(body), cl)
			require.NoError(t, err)
			assert.Equal(t, n, len(got), "%d bytes, Content-Length %d", n, cl)
		}
	}
	body := bytes.Repeat([]byte("x"), 738)
	r := bytes.NewReader(body)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(body)
		if _, err := readAll(r, int64(len(body))); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 1.0, allocs)
}
