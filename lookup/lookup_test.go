package lookup

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

func TestHostsAllows(t *testing.T) {
	h, err := ParseHosts(append(DefaultHosts, "registry.internal:5443", "Mirror.Example.com"))
	require.NoError(t, err)
	for hostport, want := range map[string]bool{
		"myregistry.azurecr.io":             true,
		"MyRegistry.AzureCR.io":             true,
		"myregistry.azurecr.io:443":         true,
		"myregistry.azurecr.cn":             true,
		"myregistry.azurecr.us":             true,
		"myregistry.azurecr.io:8443":        false, // a pattern without a port matches no port or 443
		"azurecr.io":                        false, // *. is one label, not none
		".azurecr.io":                       false,
		"a.b.azurecr.io":                    false, // nor two
		"myregistry.azurecr.io.evil.com":    false,
		"evil.com/.azurecr.io":              false,
		"user@myregistry.azurecr.io":        false,
		"myregistry.azurecr.io:":            false,
		"myregistry.azurecr.io.":            false,
		"127.0.0.1":                         false,
		"[::1]:443":                         false,
		"registry.internal:5443":            true,
		"registry.internal":                 false, // a pattern with a port matches that port only
		"registry.internal:443":             false,
		"mirror.example.com":                true,
		"mirror.example.com:443":            true,
		"x.mirror.example.com":              false,
		"":                                  false,
		"myregistry.azurecr.io:443:443":     false,
		"my_registry.azurecr.io":            false,
		"-myregistry.azurecr.io":            false,
		"myregistry.azurecr.io/v2/evil/x#1": false,
	} {
		assert.Equal(t, want, h.Allows(hostport), hostport)
	}
	var none Hosts
	assert.False(t, none.Allows("myregistry.azurecr.io"), "no pattern allows nothing")
}

func TestParseHostsRefuses(t *testing.T) {
	for _, bad := range []string{"", "*", "*.", "**.azurecr.io", "a.*.io", "host:0", "host:65536", "host:http", "host:08", "http://x.io", "x.io/path"} {
		_, err := ParseHosts([]string{bad})
		assert.Error(t, err, bad)
	}
}

func TestKind(t *testing.T) {
	desc := func(mt string) *Descriptor { return &Descriptor{MediaType: mt, Digest: "sha256:1"} }
	tests := []struct {
		name      string
		eventKind string
		m         Manifest
		kind      string
	}{
		{"image", acrevent.KindImage, Manifest{Config: desc("application/vnd.oci.image.config.v1+json")}, acrevent.KindImage},
		{"untagged image", acrevent.KindManifest, Manifest{Config: desc("application/vnd.oci.image.config.v1+json")}, acrevent.KindManifest},
		{"Docker image", acrevent.KindImage, Manifest{Config: desc("application/vnd.docker.container.image.v1+json")}, acrevent.KindImage},
		{"index", acrevent.KindImage, Manifest{MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []Descriptor{}}, acrevent.KindImage},
		{"OCI Helm chart", acrevent.KindImage, Manifest{Config: desc("application/vnd.cncf.helm.config.v1+json")}, acrevent.KindChart},
		{"Notation signature", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.cncf.notary.signature", Subject: desc("x")}, acrevent.KindSignature},
		{"cosign signature as a referrer", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json", Subject: desc("x")}, acrevent.KindSignature},
		{"sigstore bundle", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json", Subject: desc("x")}, acrevent.KindSignature},
		{"simple-signing layer", acrevent.KindManifest, Manifest{Config: desc("application/vnd.oci.empty.v1+json"), Subject: desc("x"),
			Layers: []Descriptor{{MediaType: "application/vnd.dev.cosign.simplesigning.v1+json"}}}, acrevent.KindSignature},
		{"in-toto", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.in-toto+json", Subject: desc("x")}, acrevent.KindAttestation},
		{"DSSE", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.dsse.envelope.v1+json", Subject: desc("x")}, acrevent.KindAttestation},
		{"SPDX", acrevent.KindManifest, Manifest{ArtifactType: "application/spdx+json", Subject: desc("x")}, acrevent.KindSBOM},
		{"CycloneDX", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.cyclonedx+json", Subject: desc("x")}, acrevent.KindSBOM},
		{"another referrer", acrevent.KindManifest, Manifest{ArtifactType: "application/vnd.example.report", Subject: desc("x")}, acrevent.KindArtifact},
		{"artifactType wins over the config", acrevent.KindManifest, Manifest{ArtifactType: "application/spdx+json",
			Config: desc("application/vnd.oci.image.config.v1+json"), Subject: desc("x")}, acrevent.KindSBOM},
		{"media types compare in lower case, parameters ignored", acrevent.KindImage, Manifest{Config: desc("Application/VND.CNCF.Helm.Config.v1+JSON; x=y")}, acrevent.KindChart},
		{"another type", acrevent.KindImage, Manifest{Config: desc("application/vnd.example.config+json")}, acrevent.KindArtifact},
		{"no type", acrevent.KindImage, Manifest{}, acrevent.KindImage},
		{"a cosign .sig tag keeps its rule", acrevent.KindSignature, Manifest{Config: desc("application/vnd.oci.image.config.v1+json"),
			Layers: []Descriptor{{MediaType: "application/vnd.dev.cosign.simplesigning.v1+json"}}}, acrevent.KindSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, _ := Kind(tc.eventKind, &tc.m)
			assert.Equal(t, tc.kind, kind)
		})
	}
	_, eff := Kind(acrevent.KindImage, &Manifest{ArtifactType: "application/spdx+json", Config: desc("application/vnd.oci.empty.v1+json")})
	assert.Equal(t, "application/spdx+json", eff)
	_, eff = Kind(acrevent.KindImage, &Manifest{Config: desc("application/vnd.oci.image.config.v1+json")})
	assert.Equal(t, "application/vnd.oci.image.config.v1+json", eff)
}

func TestIsIndex(t *testing.T) {
	assert.True(t, (&Manifest{MediaType: "application/vnd.oci.image.index.v1+json"}).IsIndex())
	assert.True(t, (&Manifest{MediaType: "application/vnd.docker.distribution.manifest.list.v2+json"}).IsIndex())
	assert.True(t, (&Manifest{Manifests: []Descriptor{}}).IsIndex(), "an OCI index may omit its media type")
	assert.False(t, (&Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json"}).IsIndex())
	assert.False(t, (&Manifest{}).IsIndex())
}

// FuzzHostsAllows: whatever an event names as its registry's host, the default patterns allow it only when
// it is one DNS label, ".azurecr." and a cloud's suffix, with no port or 443: never an address, a path,
// user info, or another domain.
func FuzzHostsAllows(f *testing.F) {
	for _, s := range []string{"myregistry.azurecr.io", "a.b.azurecr.io", "evil.com/.azurecr.io", "x.azurecr.io:443", "[::1]:443", "x.azurecr.io.evil.com"} {
		f.Add(s)
	}
	h, err := ParseHosts(DefaultHosts)
	require.NoError(f, err)
	suffix := regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.(?i:azurecr)\.(?i:io|cn|us)(:443)?$`)
	f.Fuzz(func(t *testing.T, hostport string) {
		if h.Allows(hostport) && !suffix.MatchString(hostport) {
			t.Fatalf("%q allowed", hostport)
		}
	})
}

// FuzzRefine: whatever a registry answers that reads as a manifest, refining an event's artifact by it
// gives one of the kinds, keeps the event's own rule for an image, and never panics.
func FuzzRefine(f *testing.F) {
	for _, seed := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:1"}}`,
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.cncf.notary.signature","subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:2"},"annotations":{"a":"b"}}`,
		`{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:3","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},{"digest":"sha256:4"}]}`,
		`{"config":{"mediaType":"application/vnd.oci.image.config.v1+json"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json"}],"subject":{}}`,
		`{"artifactType":"APPLICATION/SPDX+JSON; charset=utf-8","subject":{"digest":"sha256:5"}}`,
		`{}`,
	} {
		for _, kind := range []string{acrevent.KindImage, acrevent.KindManifest, acrevent.KindSignature} {
			f.Add(seed, kind, false)
		}
	}
	f.Fuzz(func(t *testing.T, raw, eventKind string, index bool) {
		var m Manifest
		if json.Unmarshal([]byte(raw), &m) != nil || !acrevent.IsArtifactKind(eventKind) {
			return
		}
		a := &acrevent.Artifact{Kind: eventKind, Index: index}
		kept := Refine(a, &m)
		require.True(t, acrevent.IsArtifactKind(a.Kind), a.Kind)
		require.Equal(t, acrevent.LookupOK, a.Lookup)
		require.True(t, a.Index || !index, "an index stays one")
		if bt := baseType(a.ArtifactType); m.Subject == nil && bt != helmConfig && (bt == "" || bt == ociImageConfig || bt == dockerImageConfig) {
			require.Equal(t, eventKind, a.Kind, "an image config keeps the event's rule")
		}
		require.Equal(t, kept && len(m.Annotations) > 0, a.Annotations != nil)
		if m.Subject != nil {
			require.Equal(t, m.Subject.Digest, a.Subject.Digest)
		}
	})
}
