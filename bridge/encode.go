package bridge

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// appendEnvelope appends the JSON of an envelope: the bytes encoding/json writes for it without HTML
// escaping (registry payloads are not HTML, and consumers that grep for "<" or "&" should find them),
// written without reflection because every published event passes here.
func appendEnvelope(b []byte, e *Envelope) []byte {
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
	b = append(b, `,"data":`...)
	b = appendData(b, &e.Data)
	return append(b, '}')
}

// appendData appends the JSON of an envelope's data, as appendEnvelope does.
func appendData(b []byte, d *EventData) []byte {
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
	return append(m.b, '}')
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
