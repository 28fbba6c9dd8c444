package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	orasremote "oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Media types of the artifacts the push helpers make, as their tools write them.
const (
	HelmConfig          = "application/vnd.cncf.helm.config.v1+json"
	HelmChartContent    = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
	NotarySignature     = "application/vnd.cncf.notary.signature"
	CosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	SPDX                = "application/spdx+json"
	InToto              = "application/vnd.in-toto+json"
)

func (r *Registry) ref(t testing.TB, repo, tag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repo + ":" + tag)
	require.NoError(t, err)
	return ref
}

func descriptorOf(t testing.TB, m interface {
	Digest() (v1.Hash, error)
	MediaType() (ggcrtypes.MediaType, error)
	Size() (int64, error)
}) ocispec.Descriptor {
	t.Helper()
	d, err := m.Digest()
	require.NoError(t, err)
	mt, err := m.MediaType()
	require.NoError(t, err)
	size, err := m.Size()
	require.NoError(t, err)
	return ocispec.Descriptor{MediaType: string(mt), Digest: digestOf(d), Size: size}
}

// PushImage pushes a single-platform OCI image tagged tag, with go-containerregistry, and returns its
// manifest's descriptor.
func (r *Registry) PushImage(t testing.TB, repo, tag string, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	img, err := random.Image(256, 1)
	require.NoError(t, err)
	img = mutate.MediaType(img, ggcrtypes.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, ggcrtypes.OCIConfigJSON)
	if annotations != nil {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	require.NoError(t, remote.Write(r.ref(t, repo, tag), img, r.auth()...))
	return descriptorOf(t, img)
}

// PushIndex pushes a multi-platform OCI index tagged tag, as docker buildx does: one image per platform,
// then, with attest, a build attestation manifest per platform (platform unknown/unknown), each by digest,
// then the index. It returns the index's descriptor.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, platforms []v1.Platform, attest bool, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, ggcrtypes.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		img, err := random.Image(128, 1)
		require.NoError(t, err)
		img = mutate.MediaType(mutate.ConfigMediaType(img, ggcrtypes.OCIConfigJSON), ggcrtypes.OCIManifestSchema1)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if attest {
		for _, a := range adds[:len(platforms)] {
			d, err := a.Add.Digest()
			require.NoError(t, err)
			att, err := mutate.Append(mutate.MediaType(mutate.ConfigMediaType(empty.Image, ggcrtypes.OCIConfigJSON), ggcrtypes.OCIManifestSchema1),
				mutate.Addendum{Layer: static.NewLayer([]byte(`{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"digest":{"sha256":"`+d.Hex+`"}}]}`), InToto)})
			require.NoError(t, err)
			adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
				Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": d.String()},
			}})
		}
	}
	idx = mutate.AppendManifests(idx, adds...)
	if annotations != nil {
		idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	}
	require.NoError(t, remote.WriteIndex(r.ref(t, repo, tag), idx, r.auth()...))
	return descriptorOf(t, idx)
}

// PushCosignSignature pushes what cosign sign pushes for subject: an image whose layer is a
// simple-signing payload, tagged sha256-<hex>.sig.
func (r *Registry) PushCosignSignature(t testing.TB, repo string, subject ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	payload := `{"critical":{"identity":{"docker-reference":"` + r.Host + "/" + repo + `"},"image":{"docker-manifest-digest":"` + subject.Digest.String() + `"},"type":"cosign container image signature"},"optional":null}`
	sig, err := mutate.Append(mutate.MediaType(mutate.ConfigMediaType(empty.Image, ggcrtypes.OCIConfigJSON), ggcrtypes.OCIManifestSchema1),
		mutate.Addendum{Layer: static.NewLayer([]byte(payload), CosignSimpleSigning),
			Annotations: map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQDtest"}})
	require.NoError(t, err)
	tag := strings.Replace(subject.Digest.String(), ":", "-", 1) + ".sig"
	require.NoError(t, remote.Write(r.ref(t, repo, tag), sig, r.auth()...))
	return descriptorOf(t, sig)
}

// auth is how go-containerregistry reaches the registry, with the credentials it asks for.
func (r *Registry) auth() []remote.Option {
	opts := []remote.Option{remote.WithTransport(r.Transport)}
	if user, password := r.Basic(); user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	}
	return opts
}

// oras returns an oras-go client of the repository.
func (r *Registry) oras(t testing.TB, repo string) *orasremote.Repository {
	t.Helper()
	rr, err := orasremote.NewRepository(r.Host + "/" + repo)
	require.NoError(t, err)
	user, password := r.Basic()
	rr.Client = &auth.Client{Client: r.HTTPClient(), Credential: auth.StaticCredential(r.Host, auth.Credential{Username: user, Password: password})}
	return rr
}

// PushReferrer attaches an artifact of artifactType to subject with oras-go, as Notation (a signature),
// syft or oras attach (an SBOM) do: an OCI 1.1 manifest with a subject, pushed by digest.
func (r *Registry) PushReferrer(t testing.TB, repo string, subject ocispec.Descriptor, artifactType, layerMediaType string, layer []byte) ocispec.Descriptor {
	t.Helper()
	return r.packManifest(t, repo, "", artifactType, &subject, layerMediaType, layer, nil)
}

// PushArtifact pushes an OCI artifact of artifactType tagged tag with oras-go, as oras push does.
func (r *Registry) PushArtifact(t testing.TB, repo, tag, artifactType string, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	return r.packManifest(t, repo, tag, artifactType, nil, "application/vnd.oci.image.layer.v1.tar", []byte("artifact"), annotations)
}

// PushChart pushes a Helm chart as Helm's OCI client lays it out (a Helm config and the chart's archive),
// tagged with its version, with oras-go.
func (r *Registry) PushChart(t testing.TB, repo, version string) ocispec.Descriptor {
	t.Helper()
	rr := r.oras(t, repo)
	cfg := []byte(`{"name":"` + repo[strings.LastIndex(repo, "/")+1:] + `","version":"` + version + `","apiVersion":"v2"}`)
	return r.packWith(t, rr, version, "", cfg, nil, HelmChartContent, []byte("chart archive"), nil)
}

func (r *Registry) packManifest(t testing.TB, repo, tag, artifactType string, subject *ocispec.Descriptor, layerMediaType string, layer []byte, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	return r.packWith(t, r.oras(t, repo), tag, artifactType, nil, subject, layerMediaType, layer, annotations)
}

// packWith packs a manifest in memory and copies it, with its blobs, to the registry: by tag when tag is
// set (one PUT by tag, as oras push does), else by digest.
func (r *Registry) packWith(t testing.TB, rr *orasremote.Repository, tag, artifactType string, helmConfig []byte, subject *ocispec.Descriptor, layerMediaType string, layer []byte, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	mem := memory.New()
	layerDesc := content.NewDescriptorFromBytes(layerMediaType, layer)
	require.NoError(t, mem.Push(ctx, layerDesc, bytes.NewReader(layer)))
	var config *ocispec.Descriptor
	if helmConfig != nil {
		d := content.NewDescriptorFromBytes(HelmConfig, helmConfig)
		require.NoError(t, mem.Push(ctx, d, bytes.NewReader(helmConfig)))
		config = &d
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[ocispec.AnnotationCreated] = "2026-12-01T00:00:00Z"
	opts := oras.PackManifestOptions{Subject: subject, Layers: []ocispec.Descriptor{layerDesc}, ConfigDescriptor: config, ManifestAnnotations: annotations}
	desc, err := oras.PackManifest(ctx, mem, oras.PackManifestVersion1_1, artifactType, opts)
	require.NoError(t, err)
	if subject != nil {
		// The subject is in the registry, not in the memory store: copy the referrer alone.
		rc, err := mem.Fetch(ctx, desc)
		require.NoError(t, err)
		defer rc.Close()
		for _, d := range []ocispec.Descriptor{layerDesc} {
			b, err := mem.Fetch(ctx, d)
			require.NoError(t, err)
			require.NoError(t, rr.Push(ctx, d, b))
			b.Close()
		}
		empty := ocispec.DescriptorEmptyJSON
		require.NoError(t, rr.Push(ctx, empty, bytes.NewReader(empty.Data)))
		require.NoError(t, rr.Push(ctx, desc, rc))
		return desc
	}
	ref := desc.Digest.String()
	if tag != "" {
		require.NoError(t, mem.Tag(ctx, desc, tag))
		ref = tag
	}
	_, err = oras.Copy(ctx, mem, ref, rr, ref, oras.DefaultCopyOptions)
	require.NoError(t, err)
	return desc
}

func digestOf(h v1.Hash) digest.Digest { return digest.Digest(h.String()) }

// PushMany pushes one image to repo, then n more manifests of the same image that differ by an
// annotation, each a manifest of its own digest (their blobs are the first image's, so no blob is
// uploaded again), tagged tag-<i>. It returns their pushes: enough distinct manifests for lookups that the
// cache has never seen.
func (r *Registry) PushMany(t testing.TB, repo string, n int) []Push {
	t.Helper()
	img, err := random.Image(256, 1)
	require.NoError(t, err)
	img = mutate.MediaType(mutate.ConfigMediaType(img, ggcrtypes.OCIConfigJSON), ggcrtypes.OCIManifestSchema1)
	require.NoError(t, remote.Write(r.ref(t, repo, "base"), img, r.auth()...))
	r.Pushes()
	m, err := img.Manifest()
	require.NoError(t, err)
	ctx := context.Background()
	rr := r.oras(t, repo)
	for i := range n {
		m.Annotations = map[string]string{"n": strconv.Itoa(i)}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		desc := content.NewDescriptorFromBytes(string(ggcrtypes.OCIManifestSchema1), b)
		require.NoError(t, rr.PushReference(ctx, desc, bytes.NewReader(b), "tag-"+strconv.Itoa(i)))
	}
	return r.Pushes()
}
