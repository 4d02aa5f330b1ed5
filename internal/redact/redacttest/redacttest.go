// Package redacttest checks that a value prints without its secrets in
// every form fmt, log and slog give it.
package redacttest

import (
	"bytes"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"testing"
)

// MaxLen is the longest output that still counts as a short description.
const MaxLen = 600

// Forms prints v in every form a program might log it: fmt's verbs,
// log.Printf("%+v"), and slog's JSON and text handlers at DEBUG.
func Forms(v any) map[string]string {
	out := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		out[verb] = fmt.Sprintf(verb, v)
	}
	var buf bytes.Buffer
	log.New(&buf, "", 0).Printf("%+v", v)
	out["log.Printf"] = buf.String()
	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).Debug("m", "v", v)
	out["slog JSON"] = buf.String()
	buf.Reset()
	slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).Debug("m", "v", v)
	out["slog text"] = buf.String()
	return out
}

// Check fails t if any form of v (see [Forms]) contains one of secrets or
// is longer than MaxLen, or if its plain forms (%v, %+v, %s, log and slog)
// do not name each of wants.
func Check(t testing.TB, v any, secrets, wants []string) {
	t.Helper()
	forms := Forms(v)
	for form, out := range forms {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s of %T shows a secret (%.20q...): %.300s", form, v, s, out)
			}
		}
		if len(out) > MaxLen {
			t.Errorf("%s of %T is %d bytes long, not a short description: %.300s...", form, v, len(out), out)
		}
	}
	for _, form := range []string{"%v", "%+v", "%s", "log.Printf", "slog JSON", "slog text"} {
		for _, w := range wants {
			if !strings.Contains(forms[form], w) {
				t.Errorf("%s of %T does not say %q: %s", form, v, w, forms[form])
			}
		}
	}
}
