package redrive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// DoneTag is the blob index tag a redriven blob gets, its value the time: a rerun skips the blobs that
// have it.
const DoneTag = "acrbridge-redriven"

// Container is a dead-letter container, reached with the Azure SDK.
type Container struct {
	client *container.Client
	// name is the container as messages name it (its URL without a query); sas is set when a SAS in the
	// URL is the credential.
	name string
	sas  bool
	// expiry is the SAS's, when it says.
	expiry time.Time
}

// Credentials say how to reach a container that the URL given does not carry a SAS for.
type Credentials struct {
	// ConnectionString is AZURE_STORAGE_CONNECTION_STRING.
	ConnectionString string
	// TokenCredential returns the default credential chain, asked for only when neither a SAS nor a
	// connection string is given.
	TokenCredential func() (azcore.TokenCredential, error)
}

// Open reaches the container ref names: a container URL with a SAS query (the SAS is the credential);
// with a connection string, a URL or a bare container name authenticated by it; otherwise a URL and the
// default credential chain (the role Storage Blob Data Owner, which blob index tags need). needTags is
// false for a dry run, which sets none.
func Open(ref string, creds Credentials, needTags bool, now time.Time) (*Container, error) {
	u, err := url.Parse(ref)
	isURL := err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
	switch {
	case isURL && u.Query().Get("sig") != "":
		if err := checkSAS(u.Query(), needTags, now); err != nil {
			return nil, fmt.Errorf("container %s: %w", withoutQuery(u), err)
		}
		c, err := container.NewClientWithNoCredential(ref, nil)
		if err != nil {
			return nil, fmt.Errorf("container %s: %s", withoutQuery(u), redact(err.Error()))
		}
		expiry, _ := time.Parse(time.RFC3339, u.Query().Get("se"))
		return &Container{client: c, name: withoutQuery(u), sas: true, expiry: expiry}, nil
	case creds.ConnectionString != "":
		name := ref
		if isURL {
			parts, err := blob.ParseURL(ref)
			if err != nil || parts.ContainerName == "" {
				return nil, fmt.Errorf("%s names no container", withoutQuery(u))
			}
			name = parts.ContainerName
		} else if ref == "" || strings.ContainsAny(ref, "/?#") {
			return nil, fmt.Errorf("--container %q is neither a container URL nor a container name", ref)
		}
		c, err := container.NewClientFromConnectionString(creds.ConnectionString, name, nil)
		if err != nil {
			return nil, fmt.Errorf("AZURE_STORAGE_CONNECTION_STRING: %s", redact(err.Error()))
		}
		return &Container{client: c, name: c.URL()}, nil
	case !isURL:
		return nil, fmt.Errorf("--container %q is not a container URL (https://{account}.blob.core.windows.net/{container}, with a SAS query or not); a bare name needs AZURE_STORAGE_CONNECTION_STRING", ref)
	}
	if creds.TokenCredential == nil {
		return nil, fmt.Errorf("container %s: no SAS in the URL, no AZURE_STORAGE_CONNECTION_STRING, and no Microsoft Entra ID credential", withoutQuery(u))
	}
	cred, err := creds.TokenCredential()
	if err != nil {
		return nil, fmt.Errorf("container %s: no SAS in the URL, no AZURE_STORAGE_CONNECTION_STRING, and no Microsoft Entra ID credential: %s", withoutQuery(u), redact(err.Error()))
	}
	c, err := container.NewClient(ref, cred, nil)
	if err != nil {
		return nil, fmt.Errorf("container %s: %s", withoutQuery(u), redact(err.Error()))
	}
	return &Container{client: c, name: withoutQuery(u)}, nil
}

// checkSAS refuses a SAS that has expired or lacks a permission the redrive needs, before any request.
func checkSAS(q url.Values, needTags bool, now time.Time) error {
	if se := q.Get("se"); se != "" {
		if t, err := time.Parse(time.RFC3339, se); err == nil && !now.Before(t) {
			return fmt.Errorf("the SAS in the URL expired at %s; make a new one (read, list and tag permissions)", t.UTC().Format(time.RFC3339))
		}
		if d, err := time.Parse(time.DateOnly, se); err == nil && !now.Before(d) {
			return fmt.Errorf("the SAS in the URL expired on %s; make a new one (read, list and tag permissions)", se)
		}
	}
	if sp := q.Get("sp"); sp != "" {
		var missing []string
		for _, p := range []struct {
			letter, name string
			needed       bool
		}{{"r", "read", true}, {"l", "list", true}, {"t", "tag", needTags}} {
			if p.needed && !strings.Contains(sp, p.letter) {
				missing = append(missing, p.name+" ("+p.letter+")")
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the SAS in the URL lacks the permission %s (sp=%s); a redrive needs read, list and tag (sp=rlt)", strings.Join(missing, ", "), sp)
		}
	}
	return nil
}

// Blob is a dead-letter blob as listed.
type Blob struct {
	Name, ETag string
	Size       int64
	// Tags are its blob index tags.
	Tags map[string]string
}

// Done reports whether an earlier redrive stored every event of the blob.
func (b Blob) Done() bool {
	_, ok := b.Tags[DoneTag]
	return ok
}

// List calls f with each blob whose name starts with prefix, with its tags, in name order.
func (c *Container) List(ctx context.Context, prefix string, f func(Blob) error) error {
	opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Tags: true}}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	pager := c.client.NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return c.explain("list the blobs of", err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil {
				continue
			}
			b := Blob{Name: *item.Name, Tags: map[string]string{}}
			if p := item.Properties; p != nil {
				if p.ETag != nil {
					b.ETag = string(*p.ETag)
				}
				if p.ContentLength != nil {
					b.Size = *p.ContentLength
				}
			}
			if item.BlobTags != nil {
				for _, t := range item.BlobTags.BlobTagSet {
					if t != nil && t.Key != nil && t.Value != nil {
						b.Tags[*t.Key] = *t.Value
					}
				}
			}
			if err := f(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Read downloads a blob, at most limit bytes of it; a larger one is an error.
func (c *Container) Read(ctx context.Context, b Blob, limit int64) ([]byte, error) {
	resp, err := c.client.NewBlobClient(b.Name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, c.explain("read blob "+b.Name+" of", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s of %s: %s", b.Name, c.name, redact(err.Error()))
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("blob %s of %s is over %d bytes", b.Name, c.name, limit)
	}
	return data, nil
}

// MarkDone tags the blob as redriven, at now, keeping its other tags.
func (c *Container) MarkDone(ctx context.Context, b Blob, now time.Time) error {
	tags := make(map[string]string, len(b.Tags)+1)
	for k, v := range b.Tags {
		tags[k] = v
	}
	tags[DoneTag] = now.UTC().Format(time.RFC3339)
	if _, err := c.client.NewBlobClient(b.Name).SetTags(ctx, tags, nil); err != nil {
		return c.explain("tag blob "+b.Name+" of", err)
	}
	return nil
}

// explain says what a storage error means to the one running the redrive, naming the container and
// never a SAS signature or an account key.
func (c *Container) explain(what string, err error) error {
	var re *azcore.ResponseError
	code := ""
	if errors.As(err, &re) {
		code = re.ErrorCode
	}
	switch {
	case c.sas && !c.expiry.IsZero() && !time.Now().Before(c.expiry) && re != nil && re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s %s: the SAS in the URL expired at %s; make a new one (read, list and tag permissions)", what, c.name, c.expiry.UTC().Format(time.RFC3339))
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return fmt.Errorf("%s %s: the container does not exist (is the URL the dead-letter container's, https://{account}.blob.core.windows.net/{container}?)", what, c.name)
	case bloberror.HasCode(err, bloberror.AuthenticationFailed):
		if c.sas {
			return fmt.Errorf("%s %s: the storage account refused the SAS (expired, revoked, or signed with another key); make a new one with read, list and tag permissions", what, c.name)
		}
		return fmt.Errorf("%s %s: the storage account refused the credential (%s)", what, c.name, code)
	case bloberror.HasCode(err, bloberror.AuthorizationPermissionMismatch, bloberror.AuthorizationFailure, bloberror.InsufficientAccountPermissions):
		if c.sas {
			return fmt.Errorf("%s %s: not permitted (%s): a redrive's SAS needs read, list and tag permissions (sp=rlt)", what, c.name, code)
		}
		return fmt.Errorf("%s %s: not permitted (%s): the identity needs the Storage Blob Data Owner role on the container (Storage Blob Data Contributor cannot set blob index tags)", what, c.name, code)
	case re != nil:
		return fmt.Errorf("%s %s: %d %s", what, c.name, re.StatusCode, code)
	}
	return fmt.Errorf("%s %s: %s", what, c.name, redact(err.Error()))
}

// Name is the container as messages name it.
func (c *Container) Name() string { return c.name }

var secretRE = regexp.MustCompile(`(?i)(sig=|AccountKey=|SharedAccessSignature=)[^&;\s"']*`)

// redact blanks SAS signatures and account keys in a message.
func redact(s string) string { return secretRE.ReplaceAllString(s, "${1}REDACTED") }

func withoutQuery(u *url.URL) string {
	v := *u
	v.RawQuery, v.Fragment, v.User = "", "", nil
	return v.String()
}
