package lookup

import (
	"strings"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

// Manifest is what a lookup reads of an OCI or Docker manifest or index.
type Manifest struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *Descriptor       `json:"config"`
	Layers       []Descriptor      `json:"layers"`
	Manifests    []Descriptor      `json:"manifests"`
	Subject      *Descriptor       `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// Descriptor is an OCI content descriptor, as far as lookups read it.
type Descriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Platform  *Platform `json:"platform"`
}

// Platform is an index entry's platform.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

// Media types the refinement reads, in lower case and without parameters.
const (
	helmConfig          = "application/vnd.cncf.helm.config.v1+json"
	notarySignature     = "application/vnd.cncf.notary.signature"
	cosignSignature     = "application/vnd.dev.cosign.artifact.sig.v1+json"
	cosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	sigstoreBundle      = "application/vnd.dev.sigstore.bundle"
	ociImageConfig      = "application/vnd.oci.image.config.v1+json"
	dockerImageConfig   = "application/vnd.docker.container.image.v1+json"
	ociIndex            = "application/vnd.oci.image.index.v1+json"
	dockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Kind refines the kind an event's own rule gave (eventKind) by what its manifest says, and returns the
// manifest's effective type: its artifactType, else its config's media type (OCI's own rule).
//
//	Helm's chart config                                      chart
//	a referrer (a manifest with a subject) that is a
//	  Notation, cosign or sigstore signature, or has a
//	  cosign simple-signing layer                            signature
//	  in-toto or DSSE                                        attestation
//	  SPDX or CycloneDX                                      sbom
//	  anything else                                          artifact
//	an image config, an index, or no type at all            the event's own rule
//	any other type                                           artifact
func Kind(eventKind string, m *Manifest) (kind, effectiveType string) {
	effectiveType = m.ArtifactType
	if effectiveType == "" && m.Config != nil {
		effectiveType = m.Config.MediaType
	}
	t := baseType(effectiveType)
	switch {
	case t == helmConfig:
		return acrevent.KindChart, effectiveType
	case m.Subject != nil:
		return referrerKind(t, m.Layers), effectiveType
	case t == "" || t == ociImageConfig || t == dockerImageConfig:
		return eventKind, effectiveType
	}
	return acrevent.KindArtifact, effectiveType
}

// IsIndex reports whether m is a multi-platform index: by its media type, or by its list of manifests.
func (m *Manifest) IsIndex() bool {
	t := baseType(m.MediaType)
	return t == ociIndex || t == dockerManifestList || (t == "" && m.Manifests != nil)
}

// referrerKind is the kind of a referrer whose effective type is t.
func referrerKind(t string, layers []Descriptor) string {
	switch {
	case t == notarySignature, t == cosignSignature, strings.HasPrefix(t, sigstoreBundle):
		return acrevent.KindSignature
	case strings.Contains(t, "in-toto"), strings.Contains(t, "dsse"):
		return acrevent.KindAttestation
	case strings.Contains(t, "spdx"), strings.Contains(t, "cyclonedx"):
		return acrevent.KindSBOM
	}
	for _, l := range layers {
		if baseType(l.MediaType) == cosignSimpleSigning {
			return acrevent.KindSignature
		}
	}
	return acrevent.KindArtifact
}

// baseType is a media type without its parameters, in lower case.
func baseType(mt string) string {
	mt, _, _ = strings.Cut(mt, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// maxAnnotationBytes bounds the annotations copied into an event: a manifest may carry up to 4 MiB of
// them, and a message that large would be refused by NATS (and by its consumers).
const maxAnnotationBytes = 16 << 10

// Refine sets what a looked-up manifest says of an event whose own rule gave a: the refined kind, the
// effective type, the subject of a referrer, an index's platforms and the manifest's annotations, and
// Lookup to ok. It reports false when the annotations were over maxAnnotationBytes and left out.
func Refine(a *acrevent.Artifact, m *Manifest) (annotationsKept bool) {
	a.Kind, a.ArtifactType = Kind(a.Kind, m)
	a.Index = a.Index || m.IsIndex()
	a.Lookup = acrevent.LookupOK
	if s := m.Subject; s != nil {
		a.Subject = &acrevent.ArtifactSubject{Digest: s.Digest, MediaType: s.MediaType}
	}
	if a.Index {
		for _, d := range m.Manifests {
			if p := d.Platform; p != nil {
				a.Platforms = append(a.Platforms, acrevent.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, Digest: d.Digest})
			}
		}
	}
	size := 0
	for k, v := range m.Annotations {
		size += len(k) + len(v)
	}
	if size > maxAnnotationBytes {
		return false
	}
	if len(m.Annotations) > 0 {
		a.Annotations = m.Annotations
	}
	return true
}
