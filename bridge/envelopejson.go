package bridge

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/internal/jsonscan"
)

// The envelope's JSON on the hot path: the ACR event data read in one pass, as encoding/json would read
// it, and the envelope written as encoding/json would write it. Fuzz tests in envelopejson_test.go hold
// both to encoding/json.

// The fields of EventData, Target and the string-only objects, by their index in the Fields below.
const (
	dRegistry = iota
	dOrigin
	dID
	dAction
	dTimestamp
	dLocation
	dTarget
	dRequest
	dActor
	dSource
	dConnectedRegistry
)

const (
	tMediaType = iota
	tSize
	tDigest
	tLength
	tRepository
	tTag
	tURL
	tName
	tVersion
)

var (
	dataFields = jsonscan.NewFields("registry", "origin", "id", "action", "timestamp", "location",
		"target", "request", "actor", "source", "connectedRegistry")
	targetFields = jsonscan.NewFields("mediaType", "size", "digest", "length", "repository", "tag", "url",
		"name", "version")
	requestFields = jsonscan.NewFields("id", "host", "method", "useragent", "addr")
	nameFields    = jsonscan.NewFields("name")
	sourceFields  = jsonscan.NewFields("addr", "instanceID")
)

// readData reads the ACR event data that jsonscan.Parse accepted as v, as json.Unmarshal into an
// EventData would (registry and origin included, since a wrong type there fails that too). It reports
// false for a v that Parse declined (the zero Value), and for any error; encoding/json then decides and
// explains.
func readData(v jsonscan.Value, data *acrevent.EventData) bool {
	if v.Kind() != jsonscan.Object {
		return false
	}
	var d acrevent.EventData
	var seen uint32
	ok := true
	for key, val := range v.Members() {
		f := dataFields.Index(key)
		if f < 0 {
			continue
		}
		if seen&(1<<f) != 0 {
			// One field under two spellings: encoding/json's rules for that are its own.
			return false
		}
		seen |= 1 << f
		switch f {
		case dRegistry:
			d.Registry, ok = val.StrOrNull()
		case dOrigin:
			d.Origin, ok = val.StrOrNull()
		case dID:
			d.ID, ok = val.StrOrNull()
		case dAction:
			d.Action, ok = val.StrOrNull()
		case dTimestamp:
			d.Timestamp, ok = val.StrOrNull()
		case dLocation:
			d.Location, ok = val.StrOrNull()
		case dTarget:
			d.Target, ok = readTarget(val)
		case dRequest:
			d.Request, ok = readObject(val, func(r *acrevent.Request) bool {
				return readStrings(val, requestFields, &r.ID, &r.Host, &r.Method, &r.UserAgent, &r.Addr)
			})
		case dActor:
			d.Actor, ok = readObject(val, func(a *acrevent.Actor) bool { return readStrings(val, nameFields, &a.Name) })
		case dSource:
			d.Source, ok = readObject(val, func(s *acrevent.Source) bool {
				return readStrings(val, sourceFields, &s.Addr, &s.InstanceID)
			})
		case dConnectedRegistry:
			d.ConnectedRegistry, ok = readObject(val, func(c *acrevent.ConnectedRegistry) bool {
				return readStrings(val, nameFields, &c.Name)
			})
		}
		if !ok {
			return false
		}
	}
	*data = d
	return true
}

// readObject reads what encoding/json reads into a pointer to a struct: null is nil, an object is read
// by fill into a new struct.
func readObject[T any](v jsonscan.Value, fill func(*T) bool) (*T, bool) {
	switch v.Kind() {
	case jsonscan.Null:
		return nil, true
	case jsonscan.Object:
		p := new(T)
		return p, fill(p)
	}
	return nil, false
}

// readStrings reads an object whose fields are all strings; dst holds them in the order of fields.
func readStrings(v jsonscan.Value, fields jsonscan.Fields, dst ...*string) bool {
	var seen uint32
	for key, val := range v.Members() {
		f := fields.Index(key)
		if f < 0 {
			continue
		}
		if seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		s, ok := val.StrOrNull()
		if !ok {
			return false
		}
		*dst[f] = s
	}
	return true
}

func readTarget(v jsonscan.Value) (*acrevent.Target, bool) {
	return readObject(v, func(t *acrevent.Target) bool {
		var seen uint32
		for key, val := range v.Members() {
			f := targetFields.Index(key)
			if f < 0 {
				continue
			}
			if seen&(1<<f) != 0 {
				return false
			}
			seen |= 1 << f
			var ok bool
			switch f {
			case tSize:
				t.Size, ok = readInt(val)
			case tLength:
				t.Length, ok = readInt(val)
			case tMediaType:
				t.MediaType, ok = val.StrOrNull()
			case tDigest:
				t.Digest, ok = val.StrOrNull()
			case tRepository:
				t.Repository, ok = val.StrOrNull()
			case tTag:
				t.Tag, ok = val.StrOrNull()
			case tURL:
				t.URL, ok = val.StrOrNull()
			case tName:
				t.Name, ok = val.StrOrNull()
			case tVersion:
				t.Version, ok = val.StrOrNull()
			}
			if !ok {
				return false
			}
		}
		return true
	})
}

// readInt reads what encoding/json reads into an *int64: null is nil.
func readInt(v jsonscan.Value) (*int64, bool) {
	if v.Kind() == jsonscan.Null {
		return nil, true
	}
	n, ok := v.Int64()
	return &n, ok
}

// appendEnvelope appends the JSON of an envelope: the bytes encoding/json writes for it without HTML
// escaping (registry payloads are not HTML, and consumers that grep for "<" or "&" should find them),
// written without reflection because every published event passes here.
func appendEnvelope(b []byte, e *acrevent.Envelope) []byte {
	b = append(b, `{"specversion":`...)
	b = appendString(b, e.SpecVersion)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, e.Subject)
	}
	b = append(b, `,"time":`...)
	b = appendString(b, e.Time)
	b = append(b, `,"datacontenttype":`...)
	b = appendString(b, e.DataContentType)
	if e.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, e.TraceParent)
	}
	if e.TraceState != "" {
		b = append(b, `,"tracestate":`...)
		b = appendString(b, e.TraceState)
	}
	b = append(b, `,"data":`...)
	b = appendData(b, &e.Data)
	return append(b, '}')
}

// appendData appends the JSON of an envelope's data, as appendEnvelope does.
func appendData(b []byte, d *acrevent.EventData) []byte {
	b = append(b, `{"registry":`...)
	b = appendString(b, d.Registry)
	b = append(b, `,"origin":`...)
	b = appendString(b, d.Origin)
	m := members{b: b, sep: ','}
	m.str("id", d.ID)
	m.str("action", d.Action)
	m.str("timestamp", d.Timestamp)
	m.str("location", d.Location)
	if t := d.Target; t != nil {
		o := m.object("target")
		o.str("mediaType", t.MediaType)
		o.int("size", t.Size)
		o.str("digest", t.Digest)
		o.int("length", t.Length)
		o.str("repository", t.Repository)
		o.str("tag", t.Tag)
		o.str("url", t.URL)
		o.str("name", t.Name)
		o.str("version", t.Version)
		m.b = o.end()
	}
	if r := d.Request; r != nil {
		o := m.object("request")
		o.str("id", r.ID)
		o.str("host", r.Host)
		o.str("method", r.Method)
		o.str("useragent", r.UserAgent)
		o.str("addr", r.Addr)
		m.b = o.end()
	}
	if a := d.Actor; a != nil {
		o := m.object("actor")
		o.str("name", a.Name)
		m.b = o.end()
	}
	if s := d.Source; s != nil {
		o := m.object("source")
		o.str("addr", s.Addr)
		o.str("instanceID", s.InstanceID)
		m.b = o.end()
	}
	if c := d.ConnectedRegistry; c != nil {
		o := m.object("connectedRegistry")
		o.str("name", c.Name)
		m.b = o.end()
	}
	if a := d.Artifact; a != nil {
		m.key("artifact")
		m.b = appendArtifact(m.b, a)
	}
	return append(m.b, '}')
}

// appendArtifact appends the JSON of data.artifact, as appendEnvelope does; annotations in key order, as
// encoding/json writes a map.
func appendArtifact(b []byte, a *acrevent.Artifact) []byte {
	o := members{b: b, sep: '{'}
	o.key("kind") // no omitempty: written when empty, as encoding/json does
	o.b = appendString(o.b, a.Kind)
	if a.Index {
		o.key("index")
		o.b = append(o.b, "true"...)
	}
	o.str("artifactType", a.ArtifactType)
	if s := a.Subject; s != nil {
		o.key("subject")
		o.b = append(o.b, `{"digest":`...)
		o.b = appendString(o.b, s.Digest)
		sub := members{b: o.b, sep: ','}
		sub.str("mediaType", s.MediaType)
		o.b = append(sub.b, '}')
	}
	if len(a.Platforms) > 0 {
		o.key("platforms")
		for i, p := range a.Platforms {
			if i == 0 {
				o.b = append(o.b, '[')
			} else {
				o.b = append(o.b, ',')
			}
			po := members{b: o.b, sep: '{'}
			po.str("os", p.OS)
			po.str("architecture", p.Architecture)
			po.str("variant", p.Variant)
			po.str("digest", p.Digest)
			o.b = po.end()
		}
		o.b = append(o.b, ']')
	}
	if len(a.Annotations) > 0 {
		o.key("annotations")
		for i, k := range slices.Sorted(maps.Keys(a.Annotations)) {
			if i == 0 {
				o.b = append(o.b, '{')
			} else {
				o.b = append(o.b, ',')
			}
			o.b = appendString(o.b, k)
			o.b = append(o.b, ':')
			o.b = appendString(o.b, a.Annotations[k])
		}
		o.b = append(o.b, '}')
	}
	o.str("lookup", a.Lookup)
	return o.end()
}

// members appends the members of an object whose fields are omitted when empty (omitempty); sep is
// what goes before the next member: '{' until the first one, then ','.
type members struct {
	b   []byte
	sep byte
}

func (m *members) key(name string) {
	m.b = append(m.b, m.sep, '"')
	m.b = append(m.b, name...)
	m.b = append(m.b, '"', ':')
	m.sep = ','
}

func (m *members) str(name, v string) {
	if v != "" {
		m.key(name)
		m.b = appendString(m.b, v)
	}
}

func (m *members) int(name string, v *int64) {
	if v != nil {
		m.key(name)
		m.b = strconv.AppendInt(m.b, *v, 10)
	}
}

// object starts a member that is an object; the caller fills it and hands back its end().
func (m *members) object(name string) members {
	m.key(name)
	return members{b: m.b, sep: '{'}
}

func (m *members) end() []byte {
	if m.sep == '{' {
		return append(m.b, '{', '}')
	}
	return append(m.b, '}')
}

// sizeHint is room for an envelope's JSON: its strings and the names and punctuation around them (about
// 300 bytes when every field is present), so that it is written into one allocation.
func sizeHint(env *acrevent.Envelope) int {
	n := 320 + len(env.ID) + len(env.Source) + len(env.Type) + len(env.Subject) + len(env.Time)
	d := &env.Data
	n += len(d.Registry) + len(d.Origin) + len(d.ID) + len(d.Action) + len(d.Timestamp) + len(d.Location)
	if t := d.Target; t != nil {
		n += 40 + len(t.MediaType) + len(t.Digest) + len(t.Repository) + len(t.Tag) + len(t.URL) + len(t.Name) + len(t.Version)
	}
	if r := d.Request; r != nil {
		n += len(r.ID) + len(r.Host) + len(r.Method) + len(r.UserAgent) + len(r.Addr)
	}
	if a := d.Actor; a != nil {
		n += len(a.Name)
	}
	if s := d.Source; s != nil {
		n += len(s.Addr) + len(s.InstanceID)
	}
	if c := d.ConnectedRegistry; c != nil {
		n += len(c.Name)
	}
	if a := d.Artifact; a != nil {
		n += 40 + len(a.Kind)
		if a.Lookup != "" {
			n += artifactSizeHint(a)
		}
	}
	return n
}

// appendString appends s as a JSON string. Printable ASCII other than '"' and '\' is written as it is;
// a string with anything else is left to encoding/json, whose escaping rules (control bytes, invalid
// UTF-8, U+2028) are the ones consumers already meet.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// artifactSizeHint is room for what a registry lookup added to data.artifact.
func artifactSizeHint(a *acrevent.Artifact) int {
	n := 80 + len(a.ArtifactType) + len(a.Lookup)
	if s := a.Subject; s != nil {
		n += 40 + len(s.Digest) + len(s.MediaType)
	}
	for _, p := range a.Platforms {
		n += 60 + len(p.OS) + len(p.Architecture) + len(p.Variant) + len(p.Digest)
	}
	for k, v := range a.Annotations {
		n += 6 + len(k) + len(v)
	}
	return n
}
