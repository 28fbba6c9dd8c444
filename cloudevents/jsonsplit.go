package cloudevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/natsbridge/acr-nats-bridge/internal/jsonscan"
)

// DefaultMaxDepth is the nesting limit of a zero Decoder. An ACR event is three levels deep; Event Grid
// events of other services are seldom deeper than ten.
const DefaultMaxDepth = 64

// checkJSON refuses what encoding/json would accept but the bridge must not (jsonscan.Check): nesting
// deeper than maxDepth, which costs a decoder stack and time out of proportion to the body, and an object
// with a repeated key, which parsers resolve differently (RFC 8259 §4), so that the id the bridge
// de-duplicates on could differ from the one a consumer reads. It does not check syntax: json.Unmarshal
// does.
func checkJSON(b []byte, maxDepth int) error {
	err := jsonscan.Check(b, maxDepth)
	var rk *jsonscan.RepeatedKeyError
	switch {
	case errors.As(err, &rk):
		return fmt.Errorf("%w: JSON object has the key %q twice", ErrMalformed, rk.Key)
	case errors.Is(err, jsonscan.ErrTooDeep):
		return fmt.Errorf("%w: JSON nested deeper than %d levels", ErrMalformed, maxDepth)
	}
	return nil
}

// stringEnd returns the index of the quote that closes the string starting at i, or len(b).
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

// splitArray returns the elements of a body that is one JSON array, as slices of it, without decoding
// them: each element is checked when it is decoded, so the body is not scanned twice. It reports false
// when the array itself is broken (unbalanced, a missing comma, text after it). Past limit elements it
// stops and returns limit+1 of them, so that a body of a million tiny elements costs no more than limit.
func splitArray(b []byte, limit int) ([]json.RawMessage, bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '[' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil, skipSpace(b, i+1) == len(b)
	}
	var elems []json.RawMessage
	for {
		end, ok := valueEnd(b, i)
		if !ok {
			return nil, false
		}
		if elems = append(elems, b[i:end]); len(elems) > limit {
			return elems, true
		}
		i = skipSpace(b, end)
		if i == len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return elems, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

// valueEnd returns the index just after the JSON value that starts at i: a string, a container whose
// brackets balance outside strings, or a literal running to the next delimiter. The value's own syntax
// is left to its decoder.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end := stringEnd(b, i+1)
		return end + 1, end < len(b)
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
					return j + 1, true
				}
			}
		}
		return 0, false
	case ',', ']', '}', ':':
		return 0, false
	}
	j := i
	for j < len(b) && !bytes.ContainsRune([]byte(",]} \t\r\n"), rune(b[j])) {
		j++
	}
	return j, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}
