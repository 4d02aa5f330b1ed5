package dbkit

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `""`},
		{"name", `"name"`},
		{"a\x00b\xff", `"a\x00b\xff"`},
		{strings.Repeat("x", 32), strconv.Quote(strings.Repeat("x", 32))},
		{strings.Repeat("x", 1<<20), `"` + strings.Repeat("x", 32) + `"… (1048576 bytes)`},
		{"x" + strings.Repeat("é", 20), `"x` + strings.Repeat("é", 15) + `"… (41 bytes)`}, // not cut inside é
	} {
		if got := quote(c.in); got != c.want {
			t.Errorf("quote(%.40q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// FuzzQuote: whatever the input, the quote is valid UTF-8, short, and
// holds at most quoteMax bytes of it.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a", strings.Repeat("é", 40), "\xff\xfe" + strings.Repeat("\x00", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := quote(s)
		if !utf8.ValidString(q) || len(q) > 4*quoteMax+40 {
			t.Fatalf("quote(%q) = %q", s, q)
		}
		prefix, _, _ := strings.Cut(q, "…")
		unq, err := strconv.Unquote(prefix)
		if err != nil || len(unq) > quoteMax || !strings.HasPrefix(s, unq) {
			t.Fatalf("quote(%q) = %q: its quoted part is not a prefix of at most %d bytes", s, q, quoteMax)
		}
	})
}

func TestBadText(t *testing.T) {
	for s, want := range map[string]string{"ok é": "", "a\x00b": "holds a NUL byte", "\xff": "is not valid UTF-8"} {
		if got := badText(s); got != want {
			t.Errorf("badText(%q) = %q, want %q", s, got, want)
		}
	}
}
