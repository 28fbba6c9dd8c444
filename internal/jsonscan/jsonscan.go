// Package jsonscan reads JSON in one pass, without reflection, for the common case of the bridge's
// inbound events. It reads nothing it is not sure of: Parse declines anything encoding/json might read
// differently (an escaped key, a key twice, invalid UTF-8, nesting past a limit), and the caller then
// decodes with encoding/json, which decides and explains. Fuzz tests hold its readers to encoding/json.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"iter"
	"strconv"
	"unicode/utf8"
)

// MaxDepth is encoding/json's own nesting limit; Parse never accepts more.
const MaxDepth = 10000

// Value is JSON text that Parse accepted, or a part of it: always exactly one valid JSON value without
// surrounding whitespace.
type Value []byte

// Kind is the JSON type of a Value.
type Kind byte

// The JSON types.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Array
	Object
)

// Parse checks that b is one JSON value, optionally surrounded by whitespace, that this package reads
// exactly as encoding/json would: valid syntax, valid UTF-8 in every string, nested no deeper than
// maxDepth (and MaxDepth), no key written with an escape and no key twice in one object. It reports false
// otherwise; false does not mean b is invalid, only that encoding/json must read it.
func Parse(b []byte, maxDepth int) (Value, bool) {
	s := scanner{b: b, maxDepth: min(maxDepth, MaxDepth)}
	start := skipSpace(b, 0)
	end, ok := s.value(start, 0)
	if !ok || skipSpace(b, end) != len(b) {
		return nil, false
	}
	return Value(b[start:end]), true
}

// Kind returns the value's JSON type.
func (v Value) Kind() Kind {
	if len(v) == 0 {
		return Invalid
	}
	switch v[0] {
	case 'n':
		return Null
	case 't', 'f':
		return Bool
	case '"':
		return String
	case '[':
		return Array
	case '{':
		return Object
	}
	return Number
}

// Members yields the key and value of every member of an object, in order; nothing for other kinds.
// Keys are as written, which Parse guarantees is also as decoded.
func (v Value) Members() iter.Seq2[[]byte, Value] {
	return func(yield func([]byte, Value) bool) {
		if v.Kind() != Object {
			return
		}
		i := skipSpace(v, 1)
		for i < len(v) && v[i] == '"' {
			keyEnd := stringEnd(v, i+1)
			key := v[i+1 : keyEnd]
			i = skipSpace(v, skipSpace(v, keyEnd+1)+1) // past the key, the colon and spaces
			if i >= len(v) {
				return // not from Parse
			}
			end := valueEnd(v, i)
			if !yield(key, v[i:end]) {
				return
			}
			i = skipSpace(v, end)
			if i < len(v) && v[i] == ',' {
				i = skipSpace(v, i+1)
			}
		}
	}
}

// Str returns a string value decoded. Escapes are resolved by encoding/json itself.
func (v Value) Str() (string, bool) {
	if v.Kind() != String {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// StrOrNull reads what encoding/json reads into a string field: a string, or null, which leaves the
// field as it was (so a first null reads as "").
func (v Value) StrOrNull() (string, bool) {
	if v.Kind() == Null {
		return "", true
	}
	return v.Str()
}

// Int64 returns a number value that encoding/json would decode into an int64: an integer literal in range.
func (v Value) Int64() (int64, bool) {
	if v.Kind() != Number {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// Fields matches object keys to a Go struct's JSON field names the way encoding/json does: an exact
// match first, else a case-insensitive one (Azure spells connectedRegistry both ways).
type Fields struct {
	names [][]byte
}

// NewFields returns the matcher of these names; a field's index is its position.
func NewFields(names ...string) Fields {
	f := Fields{names: make([][]byte, len(names))}
	for i, n := range names {
		f.names[i] = []byte(n)
	}
	return f
}

// Index returns the index of the field key names, or -1.
func (f Fields) Index(key []byte) int {
	for i, n := range f.names {
		if bytes.Equal(key, n) {
			return i
		}
	}
	for i, n := range f.names {
		if bytes.EqualFold(key, n) {
			return i
		}
	}
	return -1
}

// scanner checks JSON syntax by recursive descent.
type scanner struct {
	b        []byte
	maxDepth int
}

// value checks the value starting at i, inside depth open containers, and returns the index after it.
func (s *scanner) value(i, depth int) (int, bool) {
	b := s.b
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		return s.str(i + 1)
	case c == '{':
		if depth >= s.maxDepth {
			return 0, false
		}
		return s.object(i+1, depth+1)
	case c == '[':
		if depth >= s.maxDepth {
			return 0, false
		}
		return s.array(i+1, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return 0, false
}

func (s *scanner) object(i, depth int) (int, bool) {
	b := s.b
	var o object
	i = skipSpace(b, i)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		end, ok := s.str(i + 1)
		if !ok {
			return 0, false
		}
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 || o.repeated(b, key, i+1) {
			return 0, false
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		if i, ok = s.value(skipSpace(b, i+1), depth); !ok {
			return 0, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// object is what the scanner keeps of an open object to find a repeated key: where its first keys are
// in b, and past that many keys a set, so that a hostile object of a million keys stays linear.
type object struct {
	keys [16]struct{ start, end int }
	n    int
	set  map[string]struct{}
}

// repeated records a key of the object and reports whether the object already had it.
func (o *object) repeated(b []byte, key []byte, start int) bool {
	if o.set != nil {
		if _, dup := o.set[string(key)]; dup {
			return true
		}
		o.set[string(key)] = struct{}{}
		return false
	}
	for _, k := range o.keys[:o.n] {
		if k.end-k.start == len(key) && string(b[k.start:k.end]) == string(key) {
			return true
		}
	}
	if o.n < len(o.keys) {
		o.keys[o.n] = struct{ start, end int }{start, start + len(key)}
		o.n++
		return false
	}
	o.set = make(map[string]struct{}, 4*len(o.keys))
	for _, k := range o.keys {
		o.set[string(b[k.start:k.end])] = struct{}{}
	}
	o.set[string(key)] = struct{}{}
	return false
}

func (s *scanner) array(i, depth int) (int, bool) {
	b := s.b
	i = skipSpace(b, i)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = s.value(i, depth); !ok {
			return 0, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// str checks the string whose contents start at i and returns the index after its closing quote.
func (s *scanner) str(i int) (int, bool) {
	b := s.b
	for i < len(b) {
		c := b[i]
		if plain[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, false
				}
				i += 6
			default:
				return 0, false
			}
		case c < 0x20:
			return 0, false
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false
			}
			i += size
		}
	}
	return 0, false
}

// plain marks the bytes a string holds as they are: ASCII other than control bytes, '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number checks a number by RFC 8259's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// stringEnd returns the index of the quote that closes the string whose contents start at i.
func stringEnd(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case '\\':
			i += 2
			continue
		case '"':
			return i
		}
		i++
	}
	return len(b)
}

// valueEnd returns the index just after the valid JSON value that starts at i.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return min(stringEnd(b, i+1)+1, len(b))
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j+1)
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			return j
		}
		j++
	}
	return j
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}
