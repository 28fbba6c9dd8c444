package bridge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

// TestArtifactOf: DESIGN §4's rules, in their order, for every type.
func TestArtifactOf(t *testing.T) {
	digest := strings.Repeat("0123456789abcdef", 4)
	const (
		ociManifest = "application/vnd.oci.image.manifest.v1+json"
		ociIndex    = "application/vnd.oci.image.index.v1+json"
		dockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	)
	tests := []struct {
		name, typ, tag, mediaType string
		kind                      string
		index                     bool
	}{
		{"tagged image", acrevent.TypeImagePushed, "v1", ociManifest, acrevent.KindImage, false},
		{"tagged index", acrevent.TypeImagePushed, "v1", ociIndex, acrevent.KindImage, true},
		{"tagged Docker list", acrevent.TypeImagePushed, "latest", dockerList, acrevent.KindImage, true},
		{"index media type in upper case with parameters", acrevent.TypeImagePushed, "v1", "Application/VND.OCI.Image.Index.v1+JSON ; charset=utf-8", acrevent.KindImage, true},
		{"platform manifest by digest", acrevent.TypeImagePushed, "", ociManifest, acrevent.KindManifest, false},
		{"index by digest", acrevent.TypeImagePushed, "", ociIndex, acrevent.KindManifest, true},
		{"cosign signature", acrevent.TypeImagePushed, "sha256-" + digest + ".sig", ociManifest, acrevent.KindSignature, false},
		{"cosign attestation", acrevent.TypeImagePushed, "sha256-" + digest + ".att", ociManifest, acrevent.KindAttestation, false},
		{"cosign SBOM", acrevent.TypeImagePushed, "sha256-" + digest + ".sbom", ociManifest, acrevent.KindSBOM, false},
		{"referrers tag schema", acrevent.TypeImagePushed, "sha256-" + digest, ociIndex, acrevent.KindManifest, true},
		{"upper-case hex is no digest", acrevent.TypeImagePushed, "sha256-" + strings.ToUpper(digest) + ".sig", ociManifest, acrevent.KindImage, false},
		{"63 hex digits are no digest", acrevent.TypeImagePushed, "sha256-" + digest[1:] + ".sig", ociManifest, acrevent.KindImage, false},
		{"other suffix", acrevent.TypeImagePushed, "sha256-" + digest + ".bak", ociManifest, acrevent.KindImage, false},
		{"signature tag wins over an artifact media type", acrevent.TypeImagePushed, "sha256-" + digest + ".sig", "application/vnd.oci.artifact.manifest.v1+json", acrevent.KindSignature, false},
		{"no tag wins over the chart media type", acrevent.TypeImagePushed, "", "application/vnd.acr.helm.chart", acrevent.KindManifest, false},
		{"OCI artifact manifest", acrevent.TypeImagePushed, "1.0", "application/vnd.oci.artifact.manifest.v1+json", acrevent.KindArtifact, false},
		{"ACR chart media type", acrevent.TypeImagePushed, "1.0", "application/vnd.acr.helm.chart", acrevent.KindChart, false},
		{"unknown media type", acrevent.TypeImagePushed, "v1", "application/x-unknown", acrevent.KindImage, false},
		{"no media type", acrevent.TypeImagePushed, "v1", "", acrevent.KindImage, false},
		{"chart pushed", acrevent.TypeChartPushed, "", "application/vnd.acr.helm.chart", acrevent.KindChart, false},
		{"chart deleted", acrevent.TypeChartDeleted, "1.0", "", acrevent.KindChart, false},
		{"delete by digest", acrevent.TypeImageDeleted, "", ociManifest, acrevent.KindImage, false},
		{"delete of a signature", acrevent.TypeImageDeleted, "sha256-" + digest + ".sig", ociManifest, acrevent.KindImage, false},
		{"delete of an index", acrevent.TypeImageDeleted, "", ociIndex, acrevent.KindImage, true},
		{"quarantine", acrevent.TypeImageQuarantined, "", "", acrevent.KindImage, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := artifactOf(tc.typ, &acrevent.Target{Tag: tc.tag, MediaType: tc.mediaType, Repository: "r"})
			assert.Equal(t, acrevent.Artifact{Kind: tc.kind, Index: tc.index}, *a)
		})
	}
	assert.Equal(t, acrevent.Artifact{Kind: acrevent.KindManifest}, *artifactOf(acrevent.TypeImagePushed, nil), "a push without a target names no tag")
}
