package acrevent

import (
	"errors"
	"fmt"
	"strings"
)

// EmptyToken stands for a missing or empty registry, repository or path component. No valid OCI name is
// "_", and a component that really is "_" is escaped as %5F, so the token is never ambiguous.
const EmptyToken = "_"

// Subjects is the subject grammar under one prefix (BRIDGE_SUBJECT_PREFIX, "acr" by default):
//
//	{prefix}.{artifact}.{verb}.{registry}.{repository tokens}   ACR events
//	{prefix}.ping.{registry}                                     webhook pings and unknown actions
//	{prefix}.deadletter                                          events that cannot be normalised
type Subjects struct {
	Prefix string
}

// EncodeRepository turns a repository name into subject tokens, one per path component:
// team/web.api -> team.web%2Eapi. An empty name is "_".
func EncodeRepository(repo string) string {
	var b strings.Builder
	WriteRepository(&b, repo)
	return b.String()
}

// WriteRepository writes EncodeRepository(repo) to b, for a subject built in one allocation.
func WriteRepository(b *strings.Builder, repo string) {
	if repo == "" {
		b.WriteString(EmptyToken)
		return
	}
	first := true
	for part := range strings.SplitSeq(repo, "/") {
		if !first {
			b.WriteByte('.')
		}
		WriteToken(b, part)
		first = false
	}
}

// DecodeRepository reverses EncodeRepository.
func DecodeRepository(tokens string) (string, error) {
	if tokens == EmptyToken {
		return "", nil
	}
	parts := strings.Split(tokens, ".")
	for i, p := range parts {
		d, err := DecodeToken(p)
		if err != nil {
			return "", err
		}
		parts[i] = d
	}
	return strings.Join(parts, "/"), nil
}

const upperHex = "0123456789ABCDEF"

// EncodeToken makes s one literal subject token: every byte outside [A-Za-z0-9_-] is written %XX in
// upper-case hex, so ".", "*", ">", "$", white space and control bytes never reach a subject; an empty
// string is "_", and the string "_" itself is "%5F".
func EncodeToken(s string) string {
	literal := s != "" && s != EmptyToken
	for i := 0; literal && i < len(s); i++ {
		literal = tokenSafe(s[i])
	}
	if literal {
		return s
	}
	var b strings.Builder
	WriteToken(&b, s)
	return b.String()
}

// WriteToken writes EncodeToken(s) to b, for a subject built in one allocation.
func WriteToken(b *strings.Builder, s string) {
	switch s {
	case "":
		b.WriteString(EmptyToken)
		return
	case EmptyToken:
		b.WriteString("%5F")
		return
	}
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xF])
	}
}

// ErrBadToken is returned by DecodeToken for a token EncodeToken cannot have produced.
var ErrBadToken = errors.New("not an encoded subject token")

// DecodeToken reverses EncodeToken: "_" is the empty string and %XX a byte.
func DecodeToken(tok string) (string, error) {
	if tok == EmptyToken {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("%w: empty", ErrBadToken)
	}
	if !strings.Contains(tok, "%") {
		for i := 0; i < len(tok); i++ {
			if !tokenSafe(tok[i]) {
				return "", fmt.Errorf("%w: %q has byte %q", ErrBadToken, tok, tok[i])
			}
		}
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '%':
			if i+2 >= len(tok) || unhex(tok[i+1]) < 0 || unhex(tok[i+2]) < 0 {
				return "", fmt.Errorf("%w: %q has a bad escape", ErrBadToken, tok)
			}
			b = append(b, byte(unhex(tok[i+1])<<4|unhex(tok[i+2])))
			i += 2
		case tokenSafe(c):
			b = append(b, c)
		default:
			return "", fmt.Errorf("%w: %q has byte %q", ErrBadToken, tok, c)
		}
	}
	return string(b), nil
}

// SubjectParts are the parts of an ACR event subject, decoded.
type SubjectParts struct {
	Artifact   string // one of the Kind constants; empty for ping and dead letter
	Verb       string // pushed, deleted, quarantined; "ping" or "deadletter" for those
	Registry   string
	Repository string
}

// ParseSubject splits a subject of the grammar back into its parts.
func (s Subjects) ParseSubject(subject string) (SubjectParts, error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".")
	if !ok {
		return SubjectParts{}, fmt.Errorf("subject %q is not under %q", subject, s.Prefix)
	}
	toks := strings.SplitN(rest, ".", 4)
	switch {
	case rest == "deadletter":
		return SubjectParts{Verb: "deadletter"}, nil
	case len(toks) == 2 && toks[0] == "ping":
		reg, err := DecodeToken(toks[1])
		return SubjectParts{Verb: "ping", Registry: reg}, err
	case len(toks) == 4:
		if !IsArtifactKind(toks[0]) {
			return SubjectParts{}, fmt.Errorf("subject %q: %q is not an artifact kind", subject, toks[0])
		}
		if toks[1] != "pushed" && toks[1] != "deleted" && toks[1] != "quarantined" {
			return SubjectParts{}, fmt.Errorf("subject %q: %q is not pushed, deleted or quarantined", subject, toks[1])
		}
		reg, err := DecodeToken(toks[2])
		if err != nil {
			return SubjectParts{}, err
		}
		repo, err := DecodeRepository(toks[3])
		if err != nil {
			return SubjectParts{}, err
		}
		return SubjectParts{Artifact: toks[0], Verb: toks[1], Registry: reg, Repository: repo}, nil
	}
	return SubjectParts{}, fmt.Errorf("subject %q is not an ACR event subject", subject)
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
