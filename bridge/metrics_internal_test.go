package bridge

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSeriesCacheCreatesEachSeriesOnce: goroutines asking for the same labels at once get one series,
// created once, and every key keeps its own.
func TestSeriesCacheCreatesEachSeriesOnce(t *testing.T) {
	var c seriesCache[requestKey, *int]
	var created atomic.Int32
	keys := []requestKey{{"POST /eventgrid", 200}, {"POST /eventgrid", 503}, {"GET /healthz", 200}}
	got := make([][]*int, 8)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() {
			for _, k := range keys {
				got[g] = append(got[g], c.get(k, func() *int {
					created.Add(1)
					return new(int)
				}))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(len(keys)), created.Load())
	for g := range got {
		assert.Equal(t, got[0], got[g])
	}
	assert.NotSame(t, got[0][0], got[0][1])
	assert.NotSame(t, got[0][1], got[0][2])
}
