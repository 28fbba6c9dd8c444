// Package acrevent is what a consumer of the bridge needs, and nothing more: the envelope every ACR event
// is published in, its decoding from a NATS message in either CloudEvents content mode, and the subject
// encoding with its parser. It imports the standard library and nats.go alone, so that a consumer never
// builds the bridge's own dependencies.
package acrevent

// The CloudEvents types of the envelope. The first four are Event Grid's own ACR event types; the native
// webhook's actions push, delete, chart_push and chart_delete map onto them. Event Grid has no type for
// quarantine or ping, so the bridge names them in the same family.
const (
	TypeImagePushed      = "Microsoft.ContainerRegistry.ImagePushed"
	TypeImageDeleted     = "Microsoft.ContainerRegistry.ImageDeleted"
	TypeChartPushed      = "Microsoft.ContainerRegistry.ChartPushed"
	TypeChartDeleted     = "Microsoft.ContainerRegistry.ChartDeleted"
	TypeImageQuarantined = "Microsoft.ContainerRegistry.ImageQuarantined"
	TypePing             = "Microsoft.ContainerRegistry.Ping"
)

// Envelope is the message published for every ACR event, whatever way it arrived: a CloudEvent 1.0 whose
// data always has the shape of EventData. Decode a NATS message into it with DecodeMessage.
type Envelope struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject,omitempty"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	// TraceParent and TraceState are the CloudEvents distributed-tracing extension: the W3C trace context
	// of the event's creator, as it arrived (the event's own attributes, else the delivery's headers).
	TraceParent string    `json:"traceparent,omitempty"`
	TraceState  string    `json:"tracestate,omitempty"`
	Data        EventData `json:"data"`
}

// EventData is the ACR event (the native webhook body and Event Grid's data are the same schema), made
// whole: the registry it happened in and the way it arrived are added, absent fields stay absent.
type EventData struct {
	Registry          string             `json:"registry"`
	Origin            string             `json:"origin"`
	ID                string             `json:"id,omitempty"`
	Action            string             `json:"action,omitempty"`
	Timestamp         string             `json:"timestamp,omitempty"`
	Location          string             `json:"location,omitempty"`
	Target            *Target            `json:"target,omitempty"`
	Request           *Request           `json:"request,omitempty"`
	Actor             *Actor             `json:"actor,omitempty"`
	Source            *Source            `json:"source,omitempty"`
	ConnectedRegistry *ConnectedRegistry `json:"connectedRegistry,omitempty"`
	// Artifact says what was pushed, deleted or quarantined; pings have none.
	Artifact *Artifact `json:"artifact,omitempty"`
}

// The artifact kinds: the {artifact} token of an event's subject and Artifact.Kind.
const (
	// KindImage is an image to run: a tagged image manifest or multi-platform index, and every delete
	// and quarantine (a deleted manifest cannot be looked at).
	KindImage = "image"
	// KindManifest is a manifest pushed by digest, with no tag: one platform's manifest of a multi-platform
	// push, a build attestation, a referrer; or tagged by the referrers tag schema (sha256-<digest>).
	KindManifest = "manifest"
	// KindSignature is a signature: a cosign sha256-<digest>.sig tag (or a Notation, cosign or sigstore
	// referrer, when the registry is looked at).
	KindSignature = "signature"
	// KindAttestation is an attestation: a cosign .att tag (or an in-toto or DSSE referrer).
	KindAttestation = "attestation"
	// KindSBOM is a software bill of materials: a cosign .sbom tag (or an SPDX or CycloneDX referrer).
	KindSBOM = "sbom"
	// KindArtifact is any other OCI artifact (application/vnd.oci.artifact.manifest.v1+json, or a
	// manifest whose artifact type is none of the above).
	KindArtifact = "artifact"
	// KindChart is a Helm chart: ACR's chart events, its legacy chart media type (or an OCI Helm chart,
	// when the registry is looked at).
	KindChart = "chart"
)

// IsArtifactKind reports whether k is one of the Kind constants.
func IsArtifactKind(k string) bool {
	switch k {
	case KindImage, KindManifest, KindSignature, KindAttestation, KindSBOM, KindArtifact, KindChart:
		return true
	}
	return false
}

// Artifact is what an event is about, as the bridge decided it.
type Artifact struct {
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Index is set when the manifest is a multi-platform index (OCI image index or Docker manifest list).
	Index bool `json:"index,omitempty"`

	// The fields below are set only when the bridge looked the manifest up in its registry
	// (BRIDGE_REGISTRY_LOOKUP); Lookup says how that went.

	// ArtifactType is the manifest's effective type: its artifactType, else its config's media type.
	ArtifactType string `json:"artifactType,omitempty"`
	// Subject is the manifest a referrer (a signature, an attestation, an SBOM) is about.
	Subject *ArtifactSubject `json:"subject,omitempty"`
	// Platforms are an index's manifests, one per platform.
	Platforms []Platform `json:"platforms,omitempty"`
	// Annotations are the manifest's own annotations, such as org.opencontainers.image.source and
	// org.opencontainers.image.revision.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Lookup is LookupOK, LookupNotFound or LookupFailed; empty when no lookup was made (lookups off, a
	// delete, a chart event, a quarantine).
	Lookup string `json:"lookup,omitempty"`
}

// What became of a registry lookup: Artifact.Lookup.
const (
	// LookupOK: the manifest was read, and the fields above are what it says.
	LookupOK = "ok"
	// LookupNotFound: the registry no longer has the manifest (deleted since, or its repository).
	LookupNotFound = "not_found"
	// LookupFailed: the registry could not be asked or did not answer (a host the bridge may not ask, a
	// timeout, refused credentials); the kind is the event's own.
	LookupFailed = "failed"
)

// ArtifactSubject is the manifest a referrer points at.
type ArtifactSubject struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType,omitempty"`
}

// Platform is one manifest of an index: the platform it runs on, and its digest.
type Platform struct {
	OS           string `json:"os,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	Variant      string `json:"variant,omitempty"`
	Digest       string `json:"digest,omitempty"`
}

// Target is the artifact the event is about. Size and Length are pointers because 0 is a size.
type Target struct {
	MediaType  string `json:"mediaType,omitempty"`
	Size       *int64 `json:"size,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Length     *int64 `json:"length,omitempty"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
	URL        string `json:"url,omitempty"`
	Name       string `json:"name,omitempty"`
	Version    string `json:"version,omitempty"`
}

// Request is the registry request that caused the event.
type Request struct {
	ID        string `json:"id,omitempty"`
	Host      string `json:"host,omitempty"`
	Method    string `json:"method,omitempty"`
	UserAgent string `json:"useragent,omitempty"`
	Addr      string `json:"addr,omitempty"`
}

// Actor is who caused the event.
type Actor struct {
	Name string `json:"name,omitempty"`
}

// Source is the registry node that generated the event.
type Source struct {
	Addr       string `json:"addr,omitempty"`
	InstanceID string `json:"instanceID,omitempty"`
}

// ConnectedRegistry names the connected (on-premises) registry an event came from.
type ConnectedRegistry struct {
	Name string `json:"name,omitempty"`
}

// IsEnvelopeType reports whether t is the type of an envelope: one of the six types above. A message of any
// other type on the bridge's subjects is a passed-through event, not an envelope.
func IsEnvelopeType(t string) bool {
	switch t {
	case TypeImagePushed, TypeImageDeleted, TypeChartPushed, TypeChartDeleted, TypeImageQuarantined, TypePing:
		return true
	}
	return false
}

// Subject is the CloudEvents subject Event Grid gives ACR events: repo:tag, else repo@digest, else repo.
// An event without a repository has no subject.
func (t *Target) Subject() string {
	if t == nil || t.Repository == "" {
		return ""
	}
	switch {
	case t.Tag != "":
		return t.Repository + ":" + t.Tag
	case t.Digest != "":
		return t.Repository + "@" + t.Digest
	}
	return t.Repository
}

// Repository is the repository the event is about, "" when it names none (a ping has no target): safe on
// any envelope, where Target may be nil.
func (d *EventData) Repository() string {
	if d == nil || d.Target == nil {
		return ""
	}
	return d.Target.Repository
}

// Tag is the tag pushed or deleted, "" when there is none (a push by digest, a ping).
func (d *EventData) Tag() string {
	if d == nil || d.Target == nil {
		return ""
	}
	return d.Target.Tag
}

// Digest is the manifest's digest, "" when the event names none.
func (d *EventData) Digest() string {
	if d == nil || d.Target == nil {
		return ""
	}
	return d.Target.Digest
}

// Reference is repository:tag, else repository@digest, else the repository ("" for a ping): what a deploy
// bot pulls.
func (d *EventData) Reference() string {
	switch repo := d.Repository(); {
	case repo == "":
		return ""
	case d.Tag() != "":
		return repo + ":" + d.Tag()
	case d.Digest() != "":
		return repo + "@" + d.Digest()
	default:
		return repo
	}
}

// Kind is what the event is about (one of the Kind constants), "" for a ping.
func (d *EventData) Kind() string {
	if d == nil || d.Artifact == nil {
		return ""
	}
	return d.Artifact.Kind
}
