package dbkit

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// FuzzDSNRoundTrip checks that any password, user and database survive
// Config.DSN and pgconn.ParseConfig unchanged.
func FuzzDSNRoundTrip(f *testing.F) {
	clearPGEnv(f)
	for _, s := range awkward {
		f.Add(s, "app", "orders")
		f.Add("pw", s, "orders")
		f.Add("pw", "app", s)
	}
	f.Add("", "app", "orders")
	f.Add(`\`, `\\`, `'\'`)
	f.Add("\xff\xfe", "u\x80", "d\xc3")
	f.Fuzz(func(t *testing.T, password, user, database string) {
		for _, s := range []string{password, user, database} {
			if strings.IndexByte(s, 0) >= 0 {
				t.Skip("NUL is rejected by Validate")
			}
		}
		if user == "" {
			t.Skip("an empty user means the OS user to pgconn, as to libpq")
		}
		c := Config{Host: "db.internal", Port: 6432, User: user, Password: password, Database: database}
		checkDSNRoundTrip(t, c)
	})
}

// FuzzParseURL checks that ParseURL never panics, always fails with a
// *ConfigError that does not contain the password, that pgx accepts the DSN
// of whatever ParseURL accepts and reads the same query exec mode from it,
// and that a parsed Config's String form shows [REDACTED] instead of the
// password.
func FuzzParseURL(f *testing.F) {
	clearPGEnv(f)
	for _, s := range []string{
		"postgres://app:s3cr3t@db.internal:5432/orders?sslmode=require",
		"postgresql://app@db/orders?connect_timeout=5&pool_max_conns=4&pool_max_idle_conns=2",
		"postgres://app:p%40ss%3Aw%2Frd@db/orders",
		"postgres://app:pa%zzss@db/orders",
		"postgres://app:pass#word@db/orders",
		"postgres://app:pass/word@db/orders",
		"postgres://app:pass word@db/orders",
		"postgres://app:pw@db:abc/orders",
		"postgres://app:pw@h1,h2/orders",
		"postgres://app@/orders?host=/var/run/postgresql",
		"postgres://app@[::1]:5433/orders",
		"postgres://app@db/orders?unknown=1",
		"postgres://app@db/orders?pool_max_conn_lifetime=1h&pool_max_conn_idle_time=-1m",
		"postgres://app@pgbouncer:6432/orders?default_query_exec_mode=exec",
		"postgres://app@db/orders?default_query_exec_mode=simple_protocol&default_query_exec_mode=cache_describe",
		"postgres://app@db/orders?default_query_exec_mode=simple%20protocol",
		"postgres://app@db/orders?default_query_exec_mode=",
		"postgres://app@db/orders?statement_cache_capacity=0",
		"mysql://app:pw@db/orders",
		"postgres://u:" + "\x00\x7f" + "@h/db",
		"",
		"://",
		"postgres://",
		"postgres://@:/?#",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseURL(raw)
		if err != nil {
			var cerr *ConfigError
			if !errors.As(err, &cerr) {
				t.Fatalf("ParseURL(%q) error is %T, want *ConfigError: %v", raw, err, err)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("ParseURL(%q) returned %#v with its error", raw, c)
			}
			if pw, ok := passwordOf(raw); ok && len(pw) >= 4 && strings.Contains(err.Error(), pw) {
				t.Errorf("ParseURL(%q) error contains the password %q: %v", raw, pw, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("ParseURL(%q) = %#v that fails Validate: %v", raw, c, err)
		}
		// pgx reads the certificate files while parsing; they are not the
		// point here.
		if c.SSLRootCert == "" && c.SSLCert == "" && c.SSLKey == "" {
			cc, err := pgx.ParseConfig(c.DSN())
			if err != nil {
				t.Fatalf("ParseURL(%q) accepted what pgx refuses: %v", raw, err)
			}
			// pgx's String names its modes with spaces where the URL has '_'.
			if got := strings.ReplaceAll(cc.DefaultQueryExecMode.String(), " ", "_"); got != c.WithDefaults().QueryExecMode {
				t.Errorf("ParseURL(%q): QueryExecMode %q reached pgx as %q", raw, c.QueryExecMode, got)
			}
		}
		if c.Password == "" {
			return
		}
		s := c.String()
		if !strings.Contains(s, ":"+redacted+"@") {
			t.Errorf("String() = %q does not show %s", s, redacted)
		}
		// Nothing of the password reaches String: another password prints the same.
		other := c
		other.Password = "x"
		if s2 := other.String(); s != s2 {
			t.Errorf("String() depends on the password: %q vs %q", s, s2)
		}
	})
}

// passwordOf returns the password of inputs shaped "postgres://u:PW@h/db".
func passwordOf(raw string) (string, bool) {
	rest, ok := strings.CutPrefix(raw, "postgres://u:")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "@h/db")
}
