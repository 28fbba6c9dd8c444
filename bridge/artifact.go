package bridge

import (
	"strings"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

// Media types the artifact rules read (DESIGN §4, artifact kinds), lower case and without parameters.
const (
	mediaTypeOCIIndex          = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerList        = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeOCIArtifact       = "application/vnd.oci.artifact.manifest.v1+json"
	mediaTypeACRHelmChart      = "application/vnd.acr.helm.chart"
	referrersTagPrefix         = "sha256-"
	referrersTagDigestHexChars = 64
)

// artifactOf decides from the event alone what an ACR event of type typ is about. ACR sends one event per
// manifest stored, so a multi-platform push is one event per platform manifest (untagged), per
// attestation, then one for the tagged index, and cosign's signatures come as sha256-<digest>.sig tags:
// only the tagged image is an image to deploy. A chart event is a chart, and a delete or a quarantine is
// an image (a deleted manifest cannot be looked at). A push takes the first rule that matches:
//
//	tag sha256-<64 lower-case hex>.sig / .att / .sbom   signature / attestation / sbom (cosign)
//	tag sha256-<64 lower-case hex>                      manifest (the referrers tag schema)
//	no tag                                              manifest (pushed by digest)
//	media type application/vnd.oci.artifact.manifest.v1+json   artifact
//	media type application/vnd.acr.helm.chart           chart
//	anything else                                       image
//
// Index is set for an index media type, whatever the kind. Media types compare case-insensitively,
// parameters ignored.
func artifactOf(typ string, t *acrevent.Target) *acrevent.Artifact {
	var tag, mediaType string
	if t != nil {
		tag, mediaType = t.Tag, baseMediaType(t.MediaType)
	}
	a := &acrevent.Artifact{Kind: acrevent.KindImage, Index: mediaType == mediaTypeOCIIndex || mediaType == mediaTypeDockerList}
	switch typ {
	case acrevent.TypeChartPushed, acrevent.TypeChartDeleted:
		a.Kind = acrevent.KindChart
	case acrevent.TypeImagePushed:
		a.Kind = pushedKind(tag, mediaType)
	}
	return a
}

// pushedKind is the kind of a pushed manifest by the rules of artifactOf.
func pushedKind(tag, mediaType string) string {
	if suffix, ok := referrersTag(tag); ok {
		switch suffix {
		case "":
			return acrevent.KindManifest
		case ".sig":
			return acrevent.KindSignature
		case ".att":
			return acrevent.KindAttestation
		case ".sbom":
			return acrevent.KindSBOM
		}
	}
	switch {
	case tag == "":
		return acrevent.KindManifest
	case mediaType == mediaTypeOCIArtifact:
		return acrevent.KindArtifact
	case mediaType == mediaTypeACRHelmChart:
		return acrevent.KindChart
	}
	return acrevent.KindImage
}

// referrersTag reports whether tag is sha256- and 64 lower-case hex digits, and returns what follows them.
func referrersTag(tag string) (suffix string, ok bool) {
	hex, ok := strings.CutPrefix(tag, referrersTagPrefix)
	if !ok || len(hex) < referrersTagDigestHexChars {
		return "", false
	}
	for i := range referrersTagDigestHexChars {
		if c := hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return hex[referrersTagDigestHexChars:], true
}

// baseMediaType is a media type without its parameters, in lower case.
func baseMediaType(mt string) string {
	mt, _, _ = strings.Cut(mt, ";")
	mt = strings.TrimSpace(mt)
	for i := range len(mt) {
		if c := mt[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(mt)
		}
	}
	return mt
}
