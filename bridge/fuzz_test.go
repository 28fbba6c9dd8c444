package bridge_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
)

func checkSubject(t *testing.T, subj, prefix string) {
	t.Helper()
	if !strings.HasPrefix(subj, prefix) {
		t.Fatalf("subject %q outside %q", subj, prefix)
	}
	for _, tok := range strings.Split(subj, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") {
			t.Fatalf("subject %q has token %q", subj, tok)
		}
	}
}

// FuzzSubjectToken: every token is literal, and decoding reverses encoding.
func FuzzSubjectToken(f *testing.F) {
	for _, s := range []string{"", "_", "a.b", "*", ">", "$SYS", "ü", "a b", "%41", "team/web.api", "/", "//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, repo string) {
		tokens := acrevent.EncodeRepository(repo)
		checkSubject(t, "acr."+tokens, "acr.")
		back, err := acrevent.DecodeRepository(tokens)
		if err != nil {
			t.Fatalf("decode %q: %v", tokens, err)
		}
		if back != repo {
			t.Fatalf("decode(encode(%q)) = %q", repo, back)
		}
		tok := acrevent.EncodeToken(repo)
		if strings.Contains(tok, ".") {
			t.Fatalf("token %q has a dot", tok)
		}
		if got, err := acrevent.DecodeToken(tok); err != nil || got != repo {
			t.Fatalf("DecodeToken(%q) = %q, %v", tok, got, err)
		}
	})
}

// FuzzNormalizeTime: an accepted time normalises to itself and ends in Z.
func FuzzNormalizeTime(f *testing.F) {
	for _, s := range []string{"2017-11-17T16:52:01.343145347Z", "2019-03-12T22:16:31.0087496+00:00", "019-03-12T22:42:08.7034064Z", "2024-05-01T12:00:00", "2024-05-01 12:00:00z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := bridge.NormalizeTime(s)
		if !ok {
			return
		}
		if !strings.HasSuffix(got, "Z") || !utf8.ValidString(got) {
			t.Fatalf("NormalizeTime(%q) = %q", s, got)
		}
		again, ok := bridge.NormalizeTime(got)
		if !ok || again != got {
			t.Fatalf("NormalizeTime(%q) = %q, but that normalises to %q, %v", s, got, again, ok)
		}
	})
}
