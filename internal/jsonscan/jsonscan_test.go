package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind Kind
	}{
		{` {"a":1, "b" : [true,false,null], "c":{"d":"e\"\u00e9\n"}} `, Object},
		{`[]`, Array},
		{`"caf\u00e9 ü"`, String},
		{`-0.5e+10`, Number},
		{`0`, Number},
		{`null`, Null},
		{`true`, Bool},
		{`{"":1}`, Object},
		{`{"a":{},"b":{"a":1}}`, Object}, // the same key in different objects
	} {
		v, ok := Parse([]byte(tc.in), 64)
		if assert.True(t, ok, tc.in) {
			assert.Equal(t, tc.kind, v.Kind(), tc.in)
			assert.Equal(t, strings.TrimSpace(tc.in), string(v.Bytes()))
		}
	}
	for _, in := range []string{
		``, ` `, `{`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `01`, `1.`, `.5`, `1e`, `+1`, `-`, `tru`, `nul`,
		`"\x"`, `"\u12"`, "\"a\tb\"", "\"\xff\"", `{"a":1}x`, `{"a":1} {}`, `[1 2]`, `'a'`,
		`{"a":1,"a":2}`, // a key twice
		`{"\u0061":1}`,  // an escaped key
		`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`, // deeper than the limit below
	} {
		_, ok := Parse([]byte(in), 16)
		assert.False(t, ok, in)
	}
	_, ok := Parse([]byte(`[[[]]]`), 3)
	assert.True(t, ok, "three levels within a limit of three")
	_, ok = Parse([]byte(`[[[]]]`), 2)
	assert.False(t, ok, "three levels past a limit of two")
}

func TestParseManyKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1`)
	}
	_, ok := Parse([]byte(b.String()+"}"), 64)
	assert.True(t, ok, "1000 distinct keys")
	_, ok = Parse([]byte(b.String()+`,"kaa":2}`), 64)
	assert.False(t, ok, "the first key again after 1000")
}

func TestMembersAndElements(t *testing.T) {
	v, ok := Parse([]byte(`{ "id" : "a" , "data":{"x":[1,"}"]} ,"n":null,"size":12}`), 64)
	require.True(t, ok)
	var keys, vals []string
	for k, val := range v.Members() {
		keys, vals = append(keys, string(k)), append(vals, string(val.Bytes()))
	}
	assert.Equal(t, []string{"id", "data", "n", "size"}, keys)
	assert.Equal(t, []string{`"a"`, `{"x":[1,"}"]}`, `null`, `12`}, vals)

	v, ok = Parse([]byte(`[ {"a":[1,2]}, [], "s" ,3]`), 64)
	require.True(t, ok)
	var elems []string
	for e := range v.Elements() {
		elems = append(elems, string(e.Bytes()))
	}
	assert.Equal(t, []string{`{"a":[1,2]}`, `[]`, `"s"`, `3`}, elems)

	for range (Value{}).Members() {
		t.Fatal("the zero Value has no members")
	}
	for range (Value{}).Elements() {
		t.Fatal("the zero Value has no elements")
	}
	assert.Equal(t, Invalid, Value{}.Kind())
}

func TestScalars(t *testing.T) {
	parse := func(in string) Value {
		v, ok := Parse([]byte(in), 64)
		require.True(t, ok, in)
		return v
	}
	s, ok := parse(`"a\"b\u00e9"`).Str()
	assert.True(t, ok)
	assert.Equal(t, "a\"bé", s)
	_, ok = parse(`12`).Str()
	assert.False(t, ok)
	s, ok = parse(`null`).StrOrNull()
	assert.True(t, ok)
	assert.Empty(t, s)

	n, ok := parse(`-9223372036854775808`).Int64()
	assert.True(t, ok)
	assert.Equal(t, int64(-9223372036854775808), n)
	for _, in := range []string{`9223372036854775808`, `1.0`, `1e2`, `"1"`} {
		_, ok := parse(in).Int64()
		assert.False(t, ok, in)
	}
}

// A string without escapes is read as a part of the parsed text, not a copy of it: the delivery path reads
// a dozen of them per event.
func TestStrSharesText(t *testing.T) {
	b := []byte(`{"id":"abc","empty":""}`)
	v, ok := Parse(b, 64)
	require.True(t, ok)
	var id, empty Value
	for key, val := range v.Members() {
		if string(key) == "id" {
			id = val
		} else {
			empty = val
		}
	}
	var s string
	allocs := testing.AllocsPerRun(100, func() { s, ok = id.Str() })
	assert.True(t, ok)
	assert.Equal(t, "abc", s)
	assert.Zero(t, allocs)
	// What Parse's caller must never do shows that no copy of the text was made either.
	b[bytes.IndexByte(b, 'b')] = 'X'
	assert.Equal(t, "aXc", s)
	s, ok = empty.Str()
	assert.True(t, ok)
	assert.Empty(t, s)
}

func TestFields(t *testing.T) {
	f := NewFields("connectedRegistry", "id")
	assert.Equal(t, 0, f.Index([]byte("connectedRegistry")))
	assert.Equal(t, 0, f.Index([]byte("connectedregistry")), "case-insensitive, as encoding/json")
	assert.Equal(t, 1, f.Index([]byte("ID")))
	assert.Equal(t, -1, f.Index([]byte("idx")))
}

// FuzzParse holds Parse and the readers to encoding/json: what Parse accepts is valid JSON whose
// members, strings and integers read the same as encoding/json reads them; and Parse declines valid JSON
// only for the reasons it gives (an escape in the text, a key twice, nesting past the limit).
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[true,null,"x"],"c":{"d":-1.5e3}}`, `[{"id":"1"},{"id":"2"}]`,
		`{"a":1,"a":2}`, `"\u00e9"`, `{"size":9223372036854775807,"length":1e2}`, `[[[[1]]]]`} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, b []byte, maxDepth int) {
		maxDepth = 1 + abs(maxDepth)%8
		v, ok := Parse(b, maxDepth)
		deep, dup, valid := reference(b, maxDepth)
		if !ok {
			if valid && utf8.Valid(b) && bytes.IndexByte(b, '\\') < 0 && !deep && !dup {
				t.Fatalf("declined plain valid JSON %q", b)
			}
			return
		}
		if !valid || deep || dup {
			t.Fatalf("accepted %q: valid %v, deeper than %d %v, a key twice %v", b, valid, maxDepth, deep, dup)
		}
		checkValue(t, v)
	})
}

// FuzzCheck: on valid JSON, Check answers ErrTooDeep or a *RepeatedKeyError exactly when encoding/json's
// tokenizer finds nesting past the limit or a key twice (keys compared as decoded); it never refuses what
// Parse accepts.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"a":1},"b":[{"a":1},{"a":2}]}`, `{"\u0061":1,"a":2}`, `[[[[[[1]]]]]]`,
		`{"a\"":1,"a\\":2}`, `"{\"a\":1,\"a\":1}"`, `{"k":"\"","k2":":"}`, "{\"\xff\":1,\"\xfe\":2}",
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"\u0061":18}`} {
		f.Add([]byte(s), 4)
	}
	f.Fuzz(func(t *testing.T, b []byte, maxDepth int) {
		maxDepth = 1 + abs(maxDepth)%8
		err := Check(b, maxDepth)
		if _, ok := Parse(b, maxDepth); ok && err != nil {
			t.Fatalf("Parse accepted %q, Check refused it: %v", b, err)
		}
		deep, dup, valid := reference(b, maxDepth)
		if !valid {
			return
		}
		var rk *RepeatedKeyError
		switch {
		case err == nil && (deep || dup):
			t.Fatalf("Check(%q, %d) passed; reference: deeper %v, a key twice %v", b, maxDepth, deep, dup)
		case err != nil && !errors.Is(err, ErrTooDeep) && !errors.As(err, &rk):
			t.Fatalf("Check(%q, %d) = %v, not the rule's answer", b, maxDepth, err)
		case errors.Is(err, ErrTooDeep) && !deep, rk != nil && !dup:
			t.Fatalf("Check(%q, %d) = %v; reference: deeper %v, a key twice %v", b, maxDepth, err, deep, dup)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1)
	}
	return n
}

// checkValue compares what the readers return for v, and for its members and elements, with
// encoding/json.
func checkValue(t *testing.T, v Value) {
	text := v.Bytes()
	switch v.Kind() {
	case String:
		var want string
		require.NoError(t, json.Unmarshal(text, &want))
		got, ok := v.Str()
		require.True(t, ok)
		require.Equal(t, want, got)
	case Number:
		var want int64
		err := json.Unmarshal(text, &want)
		got, ok := v.Int64()
		require.Equal(t, err == nil, ok, "Int64 of %s", text)
		require.Equal(t, want, got)
	case Object:
		var want map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(text, &want))
		got := map[string]json.RawMessage{}
		for k, val := range v.Members() {
			got[string(k)] = json.RawMessage(val.Bytes())
			checkValue(t, val)
		}
		require.Equal(t, want, got)
	case Array:
		var want []json.RawMessage
		require.NoError(t, json.Unmarshal(text, &want))
		var got []json.RawMessage
		for e := range v.Elements() {
			got = append(got, json.RawMessage(e.Bytes()))
			checkValue(t, e)
		}
		require.Equal(t, len(want), len(got))
		for i := range want {
			require.Equal(t, string(want[i]), string(got[i]))
		}
	}
}

// reference walks b with encoding/json's tokenizer: whether it is valid, nests deeper than maxDepth, or
// has a key twice in one object.
func reference(b []byte, maxDepth int) (deep, dup, valid bool) {
	if !json.Valid(b) {
		return false, false, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return deep, dup, true
		}
		if err != nil {
			return deep, dup, false
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top >= 0 && stack[top].object {
					stack[top].wantKey = true
				}
				stack = append(stack, frame{object: d == '{', keys: map[string]bool{}, wantKey: true})
				deep = deep || len(stack) > maxDepth
			default:
				stack = stack[:top]
			}
			continue
		}
		if top >= 0 && stack[top].object {
			if stack[top].wantKey {
				k := tok.(string)
				dup = dup || stack[top].keys[k]
				stack[top].keys[k] = true
			}
			stack[top].wantKey = !stack[top].wantKey
		}
	}
}

// BenchmarkParse reads a typical Event Grid ImagePushed event: go test ./internal/jsonscan -bench Parse
func BenchmarkParse(b *testing.B) {
	ev := []byte(`{"id":"831e1650-001e-001b-66ab-eeb76e069631","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",` +
		`"subject":"team/app:v1","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T10:00:00.1234567Z",` +
		`"data":{"id":"831e1650-001e-001b-66ab-eeb76e069631","timestamp":"2024-05-01T10:00:00.1234567Z","action":"push","location":"westus",` +
		`"target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":524,"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","length":524,"repository":"team/app","tag":"v1"},` +
		`"request":{"id":"r","host":"myregistry.azurecr.io","method":"PUT","useragent":"docker/24.0.7"}},"dataVersion":"1.0","metadataVersion":"1"}`)
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Parse(ev, 64); !ok {
			b.Fatal("declined")
		}
	}
}
