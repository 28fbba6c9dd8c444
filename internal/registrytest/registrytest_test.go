package registrytest

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every push helper stores what its tool stores, and the registry records each manifest PUT in order.
func TestPushesAreRecorded(t *testing.T) {
	r := New(t)
	idx := r.PushIndex(t, "team/web", "v1", []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}, true, nil)
	pushes := r.Pushes()
	require.Len(t, pushes, 5, "two platforms, two attestations, the index")
	for _, p := range pushes[:4] {
		assert.Empty(t, p.Tag, "by digest")
	}
	assert.Equal(t, Push{Repository: "team/web", Tag: "v1", Digest: idx.Digest.String(), MediaType: idx.MediaType, Size: idx.Size}, pushes[4])

	img := r.PushImage(t, "team/web", "v2", nil)
	r.PushCosignSignature(t, "team/web", img)
	r.PushReferrer(t, "team/web", img, NotarySignature, "application/jose+json", []byte("{}"))
	r.PushReferrer(t, "team/web", img, SPDX, SPDX, []byte(`{"spdxVersion":"SPDX-2.3"}`))
	r.PushArtifact(t, "team/docs", "v1", "application/vnd.example.docs", nil)
	r.PushChart(t, "charts/web", "1.2.3")
	pushes = r.Pushes()
	var tags []string
	for _, p := range pushes {
		tags = append(tags, p.Tag)
	}
	t.Logf("pushes: %+v", pushes)
	require.Len(t, pushes, 6, "%q", tags)
	assert.Equal(t, "v2", pushes[0].Tag)
	assert.True(t, strings.HasSuffix(pushes[1].Tag, ".sig") && strings.HasPrefix(pushes[1].Tag, "sha256-"), pushes[1].Tag)
	assert.Empty(t, pushes[2].Tag, "a referrer is pushed by digest")
	assert.Empty(t, pushes[3].Tag)
	assert.Equal(t, "v1", pushes[4].Tag)
	assert.Equal(t, Push{Repository: "charts/web", Tag: "1.2.3", Digest: pushes[5].Digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: pushes[5].Size}, pushes[5])
}
