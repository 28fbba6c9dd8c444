// Package jsonscan reads JSON in one pass, without reflection, for the common case of the bridge's
// inbound events, and holds the bridge's one rule for JSON beyond its syntax: no nesting past a limit,
// no key twice in one object. Parse reads nothing it is not sure of: it declines anything encoding/json
// might read differently (an escaped key, a key twice, invalid UTF-8, nesting past a limit), and the
// caller then asks Check whether the rule refuses the text, and decodes with encoding/json if not, which
// decides the syntax and explains. Fuzz tests hold both to encoding/json.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is encoding/json's own nesting limit; Parse never accepts more.
const MaxDepth = 10000

// ErrTooDeep is Check's answer for nesting deeper than its limit.
var ErrTooDeep = errors.New("JSON nested too deep")

// RepeatedKeyError is Check's answer for an object with a key twice. Parsers resolve that differently
// (RFC 8259 §4), so that the id the bridge de-duplicates on could differ from the one a consumer reads.
type RepeatedKeyError struct {
	// Key is the key as decoded, escapes resolved.
	Key string
}

// Error says which key is repeated.
func (e *RepeatedKeyError) Error() string {
	return fmt.Sprintf("JSON object has the key %q twice", e.Key)
}

// Check reports whether b breaks the rule: nesting deeper than maxDepth (ErrTooDeep), or an object with
// a key twice, keys compared as encoding/json decodes them (a *RepeatedKeyError). It judges nothing else:
// text that is not JSON is for encoding/json to explain, and Check returns nil for it (or the rule's
// answer for the part before the fault).
func Check(b []byte, maxDepth int) error {
	if len(b) > math.MaxInt32 {
		return nil
	}
	s := scanner{b: b, maxDepth: min(maxDepth, MaxDepth), maxLen: math.MaxInt, maxNodes: math.MaxInt, resolve: true,
		nodes: make([]node, 0, min(8+len(b)/16, 4096))}
	s.value(skipSpace(b, 0), 0)
	return s.broken
}

// Value is a JSON value that Parse accepted, or a part of it. Its zero value is Invalid. The Values of one
// Parse are for one goroutine at a time.
type Value struct {
	doc *doc
	i   int32
}

// doc is parsed text and its values in document order: a container is followed by its contents (an
// object's as key, value, key, value), so that walking members never reads the text again.
type doc struct {
	b     []byte
	nodes []node
}

// node is one value: its bytes are b[start:end], and next is the index of the node after it and all it
// contains.
type node struct {
	start, end, next int32
}

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
//
// The Value and the strings read from it share b's memory, as json.RawMessage parts of b would: b must not
// change while they are in use.
func Parse(b []byte, maxDepth int) (Value, bool) {
	return parse(b, maxDepth, math.MaxInt)
}

// ParseArray is Parse for a JSON array of at most maxLen elements. It declines a longer one as soon as it
// reaches the element past maxLen, so that a body of a million tiny elements costs no more than maxLen.
func ParseArray(b []byte, maxDepth, maxLen int) (Value, bool) {
	v, ok := parse(b, maxDepth, maxLen)
	return v, ok && v.Kind() == Array
}

func parse(b []byte, maxDepth, maxLen int) (Value, bool) {
	if len(b) > math.MaxInt32 {
		return Value{}, false
	}
	s := scanner{b: b, maxDepth: min(maxDepth, MaxDepth), maxLen: maxLen,
		nodes: make([]node, 0, min(8+len(b)/16, 4096)), maxNodes: 1024 + len(b)/4}
	end, ok := s.value(skipSpace(b, 0), 0)
	if !ok || skipSpace(b, end) != len(b) {
		return Value{}, false
	}
	return Value{doc: &doc{b: b, nodes: s.nodes}}, true
}

func (v Value) node() node { return v.doc.nodes[v.i] }

// Bytes returns the value's JSON text, without surrounding whitespace.
func (v Value) Bytes() []byte {
	if v.doc == nil {
		return nil
	}
	n := v.node()
	return v.doc.b[n.start:n.end]
}

// Kind returns the value's JSON type.
func (v Value) Kind() Kind {
	if v.doc == nil {
		return Invalid
	}
	switch v.doc.b[v.node().start] {
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
		nodes, b := v.doc.nodes, v.doc.b
		for k := v.i + 1; k < nodes[v.i].next; k = nodes[k+1].next {
			key := nodes[k]
			if !yield(b[key.start+1:key.end-1], Value{v.doc, k + 1}) {
				return
			}
		}
	}
}

// Elements yields the elements of an array, in order; nothing for other kinds.
func (v Value) Elements() iter.Seq[Value] {
	return func(yield func(Value) bool) {
		if v.Kind() != Array {
			return
		}
		nodes := v.doc.nodes
		for k := v.i + 1; k < nodes[v.i].next; k = nodes[k].next {
			if !yield(Value{v.doc, k}) {
				return
			}
		}
	}
}

// Str returns a string value decoded. Escapes are resolved by encoding/json itself.
func (v Value) Str() (string, bool) {
	if v.Kind() != String {
		return "", false
	}
	text := v.Bytes()
	if inner := text[1 : len(text)-1]; bytes.IndexByte(inner, '\\') < 0 {
		// A part of b rather than a copy, which Parse's caller allows by keeping b unchanged.
		return unsafe.String(unsafe.SliceData(inner), len(inner)), true
	}
	var s string
	if err := json.Unmarshal(text, &s); err != nil {
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
	n, err := strconv.ParseInt(string(v.Bytes()), 10, 64)
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

// scanner checks JSON syntax by recursive descent and records every value as a node.
type scanner struct {
	b        []byte
	maxDepth int
	maxLen   int // elements of an array at the top
	nodes    []node
	// maxNodes bounds the nodes to about three times the size of b: events hold far fewer values per
	// byte (about one in fifteen), and text made of tinier values is left to encoding/json.
	maxNodes int
	// keys are the key nodes of the open objects that have many keys.
	keys []int32
	// resolve is Check's mode: keys written with escapes or invalid UTF-8 are compared as decoded rather
	// than declined, strings may hold invalid UTF-8, and the values are not bounded by maxNodes.
	resolve bool
	// decoded are the keys that resolve decoded, by node.
	decoded map[int32]string
	// broken is the rule's answer, once the text breaks it.
	broken error
}

// value checks the value starting at i, inside depth open containers, and returns the index after it.
func (s *scanner) value(i, depth int) (int, bool) {
	b := s.b
	if i >= len(b) {
		return 0, false
	}
	n := len(s.nodes)
	if n >= s.maxNodes {
		return 0, false
	}
	s.nodes = appendDoubling(s.nodes, node{start: int32(i)})
	var end int
	var ok bool
	switch c := b[i]; {
	case c == '"':
		end, ok = s.str(i + 1)
	case c == '{':
		if depth >= s.maxDepth {
			s.broken = ErrTooDeep
			return 0, false
		}
		end, ok = s.object(i+1, depth+1)
	case c == '[':
		if depth >= s.maxDepth {
			s.broken = ErrTooDeep
			return 0, false
		}
		end, ok = s.array(i+1, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		end, ok = number(b, i)
	case c == 't':
		end, ok = literal(b, i, "true")
	case c == 'f':
		end, ok = literal(b, i, "false")
	case c == 'n':
		end, ok = literal(b, i, "null")
	}
	if !ok {
		return 0, false
	}
	s.nodes[n].end, s.nodes[n].next = int32(end), int32(len(s.nodes))
	return end, true
}

func (s *scanner) object(i, depth int) (int, bool) {
	b := s.b
	first := len(s.nodes) // the object's first key, once there is one
	// A repeated key: the first 16 are compared in place; past that every key's node goes on s.keys,
	// to be sorted and compared with its neighbour when the object closes, which costs four bytes a
	// key however hostile the object.
	many := len(s.keys)
	defer func() { s.keys = s.keys[:many] }()
	i = skipSpace(b, i)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for keys := 0; ; keys++ {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		k := len(s.nodes)
		end, ok := s.value(i, depth)
		if !ok {
			return 0, false
		}
		if s.resolve {
			s.resolveKey(k)
		} else if bytes.IndexByte(b[i+1:end-1], '\\') >= 0 {
			return 0, false
		}
		switch {
		case keys < 16:
			key := s.key(k)
			for j := first; j < k; j = int(s.nodes[j+1].next) {
				if s.key(j) == key {
					s.broken = &RepeatedKeyError{Key: key}
					return 0, false
				}
			}
		case keys == 16:
			for j := first; j < k; j = int(s.nodes[j+1].next) {
				s.keys = appendDoubling(s.keys, int32(j))
			}
			fallthrough
		default:
			s.keys = appendDoubling(s.keys, int32(k))
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
			if key, ok := s.repeatedKey(s.keys[many:]); ok {
				s.broken = &RepeatedKeyError{Key: key}
				return 0, false
			}
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// appendDoubling is append that doubles a full slice: append's gentler growth of large slices copies
// them over and over, and costs several times their size in all for input made to be large.
func appendDoubling[T any](s []T, v T) []T {
	if len(s) == cap(s) {
		s = append(make([]T, 0, max(2*cap(s), 16)), s...)
	}
	return append(s, v)
}

// key returns the key whose node is j: its text without the quotes, a part of b, or as decoded when
// resolveKey had to decode it.
func (s *scanner) key(j int) string {
	if s.decoded != nil {
		if k, ok := s.decoded[int32(j)]; ok {
			return k
		}
	}
	n := s.nodes[j]
	return unsafe.String(&s.b[n.start+1], n.end-n.start-2)
}

// resolveKey decodes the key whose node is j when encoding/json would read it other than as written:
// with an escape, or invalid UTF-8 (which it replaces with U+FFFD).
func (s *scanner) resolveKey(j int) {
	n := s.nodes[j]
	text := s.b[n.start:n.end]
	if bytes.IndexByte(text, '\\') < 0 && utf8.Valid(text) {
		return
	}
	var k string
	if json.Unmarshal(text, &k) != nil {
		return // not a string encoding/json reads; it will say so
	}
	if s.decoded == nil {
		s.decoded = map[int32]string{}
	}
	s.decoded[int32(j)] = k
}

// repeatedKey returns a key that two of these key nodes hold, if any.
func (s *scanner) repeatedKey(keys []int32) (string, bool) {
	slices.SortFunc(keys, func(a, b int32) int { return strings.Compare(s.key(int(a)), s.key(int(b))) })
	for j := 1; j < len(keys); j++ {
		if k := s.key(int(keys[j])); s.key(int(keys[j-1])) == k {
			return k, true
		}
	}
	return "", false
}

func (s *scanner) array(i, depth int) (int, bool) {
	b := s.b
	i = skipSpace(b, i)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for n := 1; ; n++ {
		if depth == 1 && n > s.maxLen {
			return 0, false
		}
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
		// Eight plain bytes at a time, then byte by byte from the first that is not.
		for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
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
			if r == utf8.RuneError && size == 1 && !s.resolve {
				return 0, false
			}
			i += size
		}
	}
	return 0, false
}

// plain8 reports whether all eight bytes of x are plain: none is a control byte, '"', '\\' or
// outside ASCII. (For a byte value v, (v - 0x01…) & ^v & 0x80… is non-zero when a byte of v is zero.)
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	below := (x - ones*0x20) & ^x // a byte under 0x20 (x has no high bit set when this counts)
	special := (quote-ones) & ^quote | (backslash-ones) & ^backslash | below | x
	return special&highs == 0
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

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}
