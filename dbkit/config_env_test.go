package dbkit

import (
	"net/url"
	"os/user"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Config
	}{
		{
			name: "minimal, port default",
			raw:  "postgres://app@db.internal/orders",
			want: Config{Host: "db.internal", Database: "orders", User: "app"},
		},
		{
			name: "postgresql scheme with port and password",
			raw:  "postgresql://app:s3cr3t@db.internal:6432/orders",
			want: Config{Host: "db.internal", Port: 6432, Database: "orders", User: "app", Password: "s3cr3t"},
		},
		{
			name: "percent-encoded reserved characters in the password",
			raw:  "postgres://app:p%40ss%3Aw%2Frd%3Fx%23y%25z%20%27%22%5C@db/orders",
			want: Config{Host: "db", Database: "orders", User: "app", Password: `p@ss:w/rd?x#y%z '"\`},
		},
		{
			name: "unicode password and user",
			raw:  "postgres://" + url.UserPassword("usér", "密码 🔑").String() + "@db/orders",
			want: Config{Host: "db", Database: "orders", User: "usér", Password: "密码 🔑"},
		},
		{
			name: "percent-encoded database",
			raw:  "postgres://app@db/my%20db",
			want: Config{Host: "db", Database: "my db", User: "app"},
		},
		{
			name: "ipv6 host",
			raw:  "postgres://app@[::1]:5433/orders",
			want: Config{Host: "::1", Port: 5433, Database: "orders", User: "app"},
		},
		{
			name: "every query parameter",
			raw: "postgres://app:pw@db/orders?sslmode=verify-full&application_name=api" +
				"&connect_timeout=5&pool_max_conns=20&pool_max_idle_conns=4" +
				"&pool_max_conn_lifetime=1h&pool_max_conn_idle_time=10m",
			want: Config{
				Host: "db", Database: "orders", User: "app", Password: "pw",
				SSLMode: "verify-full", ApplicationName: "api", ConnectTimeout: 5 * time.Second,
				MaxOpenConns: 20, MaxIdleConns: 4, ConnMaxLifetime: time.Hour, ConnMaxIdleTime: 10 * time.Minute,
			},
		},
		{
			name: "several hosts, libpq's list",
			raw:  "postgres://app@db1:5432,db2:5433,db3/orders?target_session_attrs=read-write",
			want: Config{Host: "db1", Port: 5432, Fallbacks: []Endpoint{{Host: "db2", Port: 5433}, {Host: "db3"}},
				TargetSessionAttrs: "read-write", Database: "orders", User: "app"},
		},
		{
			name: "several hosts as parameters, one port each",
			raw:  "postgres://app@/orders?host=db1,db2&port=5432,5433",
			want: Config{Host: "db1", Port: 5432, Fallbacks: []Endpoint{{Host: "db2", Port: 5433}}, Database: "orders", User: "app"},
		},
		{
			name: "several hosts as parameters, one port for all",
			raw:  "postgres://app@/orders?host=db1,db2&port=6432",
			want: Config{Host: "db1", Port: 6432, Fallbacks: []Endpoint{{Host: "db2", Port: 6432}}, Database: "orders", User: "app"},
		},
		{
			name: "unix socket in host parameter",
			raw:  "postgres://app@/orders?host=/var/run/postgresql",
			want: Config{Host: "/var/run/postgresql", Database: "orders", User: "app"},
		},
		{
			name: "unix socket, percent-encoded, overriding the authority host",
			raw:  "postgres://app@ignored/orders?host=%2Ftmp&port=5433",
			want: Config{Host: "/tmp", Port: 5433, Database: "orders", User: "app"},
		},
		{
			name: "libpq keywords as parameters",
			raw:  "postgres://db?dbname=orders&user=app&password=p%26w",
			want: Config{Host: "db", Database: "orders", User: "app", Password: "p&w"},
		},
		{
			name: "pgx's query exec mode",
			raw:  "postgres://app@pgbouncer:6432/orders?default_query_exec_mode=exec",
			want: Config{Host: "pgbouncer", Port: 6432, Database: "orders", User: "app", QueryExecMode: "exec"},
		},
		{
			name: "last value of a repeated parameter wins",
			raw:  "postgres://app@db/orders?sslmode=disable&sslmode=require",
			want: Config{Host: "db", Database: "orders", User: "app", SSLMode: "require"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.raw)
			if err != nil {
				t.Fatalf("ParseURL(%q) = %v", tt.raw, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseURL(%q)\n got %#v\nwant %#v\n(passwords %q, %q)", tt.raw, got, tt.want, got.Password, tt.want.Password)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	const pw = "Sup3rS3cret"
	tests := []struct {
		name     string
		raw      string
		fields   []string // fields the error must name
		contains []string // text the message must contain
	}{
		{name: "wrong scheme", raw: "mysql://app:" + pw + "@db/orders", fields: []string{"URL"}, contains: []string{"postgres://"}},
		{name: "no scheme", raw: "db/orders", fields: []string{"URL"}},
		{name: "unknown parameter", raw: "postgres://app:" + pw + "@db/orders?sslmod=require", fields: []string{"URL"}, contains: []string{"1 unknown parameter"}},
		{name: "unknown parameters", raw: "postgres://app@db/orders?zz=1&aa=2", fields: []string{"URL"}, contains: []string{"2 unknown parameters"}},
		// An unencoded '&' in a password given as a parameter makes its
		// tail a parameter name of its own: it must not be echoed.
		{
			name: "'&' in a password parameter", raw: "postgres://app@db/orders?password=abc&" + pw + "AMPPART",
			fields: []string{"URL"}, contains: []string{"1 unknown parameter", "percent-encode"},
		},
		{
			name: "'&' and '=' in a password parameter", raw: "postgres://app@db/orders?password=abc&" + pw + "=x&sslmode=disable",
			fields: []string{"URL"}, contains: []string{"1 unknown parameter"},
		},
		{name: "non-integer port", raw: "postgres://app:" + pw + "@db:abc/orders", fields: []string{"URL"}, contains: []string{"port"}},
		{name: "non-integer port parameter", raw: "postgres://app@db/orders?port=abc", fields: []string{"Port"}, contains: []string{"integer"}},
		{name: "port out of range", raw: "postgres://app@db:70000/orders", fields: []string{"Port"}},
		{name: "multi-host, a port too many", raw: "postgres://app:" + pw + "@h1,h2/orders?port=1,2,3", fields: []string{"Port"}, contains: []string{"one per host"}},
		{name: "multi-host, an empty host", raw: "postgres://app:" + pw + "@h1,,h2/orders", fields: []string{"Fallbacks[0].Host"}},
		{name: "multi-host, bad attrs", raw: "postgres://app:" + pw + "@h1,h2/orders?target_session_attrs=writable", fields: []string{"TargetSessionAttrs"}},
		{name: "bad sslmode", raw: "postgres://app@db/orders?sslmode=bogus", fields: []string{"SSLMode"}},
		{name: "bad connect_timeout", raw: "postgres://app@db/orders?connect_timeout=5s", fields: []string{"ConnectTimeout"}, contains: []string{"connect_timeout"}},
		{name: "negative connect_timeout", raw: "postgres://app@db/orders?connect_timeout=-1", fields: []string{"ConnectTimeout"}},
		{name: "bad pool_max_conns", raw: "postgres://app@db/orders?pool_max_conns=ten", fields: []string{"MaxOpenConns"}, contains: []string{"pool_max_conns"}},
		{name: "bad lifetime", raw: "postgres://app@db/orders?pool_max_conn_lifetime=forever", fields: []string{"ConnMaxLifetime"}},
		{name: "negative idle time", raw: "postgres://app@db/orders?pool_max_conn_idle_time=-1m", fields: []string{"ConnMaxIdleTime"}},
		{name: "idle above open", raw: "postgres://app@db/orders?pool_max_conns=2&pool_max_idle_conns=3", fields: []string{"MaxIdleConns"}},
		{
			name: "bad default_query_exec_mode", raw: "postgres://app:" + pw + "@db/orders?default_query_exec_mode=prepared",
			fields: []string{"QueryExecMode"}, contains: []string{"cache_statement, cache_describe, describe_exec, exec, simple_protocol"},
		},
		{
			// The value is never repeated: it may be a password pasted in the wrong place.
			name: "default_query_exec_mode holding a secret", raw: "postgres://app@db/orders?default_query_exec_mode=" + pw,
			fields: []string{"QueryExecMode"},
		},
		{name: "pgx's cache capacities are not Config fields", raw: "postgres://app@db/orders?statement_cache_capacity=0", fields: []string{"URL"}},
		{name: "missing user and database", raw: "postgres://db", fields: []string{"User", "Database"}},
		{
			name:   "all problems at once",
			raw:    "postgres://app@db:70000/orders?sslmode=bogus&connect_timeout=x&nope=1",
			fields: []string{"Port", "SSLMode", "ConnectTimeout", "URL"},
		},
		{
			name: "unparsable value not reported twice", raw: "postgres://app@db/orders?pool_max_conn_lifetime=x",
			fields: []string{"ConnMaxLifetime"},
		},
		{
			name: "unescaped %zz in password", raw: "postgres://app:" + pw + "%zz@db/orders",
			fields: []string{"URL"}, contains: []string{"malformed user or password"},
		},
		{
			name: "space in password", raw: "postgres://app:" + pw + " x@db/orders",
			fields: []string{"URL"}, contains: []string{"malformed user or password"},
		},
		{
			name: "control character", raw: "postgres://app:" + pw + "@db/orders\x7f",
			fields: []string{"URL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseURL(tt.raw)
			cerr := requireConfigError(t, err)
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("ParseURL returned a config with its error: %#v", c)
			}
			for _, f := range tt.fields {
				if !cerr.Has(f) {
					t.Errorf("error %q does not name %s", cerr, f)
				}
			}
			msg := cerr.Error()
			for _, s := range tt.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not contain %q", msg, s)
				}
			}
			if strings.Contains(msg, pw) {
				t.Errorf("error %q contains the password", msg)
			}
			seen := map[string]bool{}
			for _, f := range cerr.Fields {
				if f.Field != "URL" && seen[f.Field] {
					t.Errorf("field %s reported twice: %q", f.Field, msg)
				}
				seen[f.Field] = true
			}
		})
	}
}

func TestParseURLEveryQueryExecMode(t *testing.T) {
	for _, mode := range QueryExecModes {
		c, err := ParseURL("postgres://app@db/orders?default_query_exec_mode=" + mode)
		if err != nil || c.QueryExecMode != mode {
			t.Errorf("default_query_exec_mode=%s: ParseURL = %+v, %v", mode, c, err)
		}
	}
}

// A password with an unescaped '#', '/' or '?' ends the authority early, so
// url.Parse reads the password's head as a port and says so, quoting it.
func TestParseURLMalformedPasswordIsNotQuoted(t *testing.T) {
	for _, sep := range []string{"#", "/", "?"} {
		raw := "postgres://app:Sup3rS3cret" + sep + "x@db/orders"
		_, err := ParseURL(raw)
		cerr := requireConfigError(t, err)
		msg := cerr.Error()
		if strings.Contains(msg, "Sup3rS3cret") {
			t.Errorf("ParseURL(%q) error quotes the password: %q", raw, msg)
		}
		if !strings.Contains(msg, "malformed user or password") {
			t.Errorf("ParseURL(%q) error %q does not say the user or password is malformed", raw, msg)
		}
	}
}

// url.URL.Query drops pairs it cannot decode without a word, so a malformed
// parameter falls back to its default instead of failing: an sslmode the user
// wrote as verify-full silently becomes prefer.
func TestParseURLMalformedQueryIsAnError(t *testing.T) {
	for _, raw := range []string{
		"postgres://app@db/orders?sslmode=verify-full%zz",
		"postgres://app@db/orders?password=p%zz",
		"postgres://app@db/orders?sslmode=verify-full;application_name=api",
	} {
		c, err := ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) = %#v, nil; want an error naming the malformed parameter", raw, c)
			continue
		}
		requireConfigError(t, err)
	}
}

// env returns a getenv reading from m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{
			name: "DATABASE_URL wins over PG variables",
			env: map[string]string{
				"DATABASE_URL": "postgres://app:pw@db.internal:6432/orders?sslmode=require",
				"PGHOST":       "other", "PGPORT": "1", "PGUSER": "other", "PGPASSWORD": "other", "PGDATABASE": "other",
				"PGSSLMODE": "disable",
			},
			want: Config{Host: "db.internal", Port: 6432, Database: "orders", User: "app", Password: "pw", SSLMode: "require"},
		},
		{
			name: "query exec mode from DATABASE_URL",
			env: map[string]string{
				"DATABASE_URL": "postgres://app@pgbouncer:6432/orders?default_query_exec_mode=simple_protocol",
			},
			want: Config{Host: "pgbouncer", Port: 6432, Database: "orders", User: "app", QueryExecMode: "simple_protocol"},
		},
		{
			name: "every PG variable",
			env: map[string]string{
				"PGHOST": "db.internal", "PGPORT": "6432", "PGDATABASE": "orders", "PGUSER": "app",
				"PGPASSWORD": `p@ss w'rd\`, "PGSSLMODE": "verify-ca", "PGAPPNAME": "api",
				"PGCONNECT_TIMEOUT": "7",
			},
			want: Config{
				Host: "db.internal", Port: 6432, Database: "orders", User: "app", Password: `p@ss w'rd\`,
				SSLMode: "verify-ca", ApplicationName: "api", ConnectTimeout: 7 * time.Second,
			},
		},
		{
			name: "PGHOST defaults to localhost, PGDATABASE to the user",
			env:  map[string]string{"PGUSER": "app"},
			want: Config{Host: "localhost", Database: "app", User: "app"},
		},
		{
			name: "unix socket directory in PGHOST",
			env:  map[string]string{"PGHOST": "/var/run/postgresql", "PGUSER": "app", "PGDATABASE": "orders"},
			want: Config{Host: "/var/run/postgresql", Database: "orders", User: "app"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := configFromEnv(env(tt.env))
			if err != nil {
				t.Fatalf("configFromEnv = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("configFromEnv\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestConfigFromEnvUserDefaultsToOSUser(t *testing.T) {
	u, err := user.Current()
	if err != nil || u.Username == "" {
		t.Skipf("no OS user to default to: %v", err)
	}
	got, err := configFromEnv(env(map[string]string{}))
	if err != nil {
		t.Fatalf("configFromEnv = %v", err)
	}
	if got.User != u.Username || got.Database != u.Username || got.Host != "localhost" {
		t.Errorf("got Host %q User %q Database %q, want localhost, %q, %q", got.Host, got.User, got.Database, u.Username, u.Username)
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	const pw = "Sup3rS3cret"
	tests := []struct {
		name   string
		env    map[string]string
		fields []string
		text   []string
	}{
		{
			name:   "PGPORT and PGSSLMODE reported together",
			env:    map[string]string{"PGUSER": "app", "PGPASSWORD": pw, "PGPORT": "abc", "PGSSLMODE": "bogus"},
			fields: []string{"Port", "SSLMode"},
			text:   []string{"PGPORT"},
		},
		{
			name:   "PGCONNECT_TIMEOUT not a number",
			env:    map[string]string{"PGUSER": "app", "PGCONNECT_TIMEOUT": "5s"},
			fields: []string{"ConnectTimeout"},
			text:   []string{"PGCONNECT_TIMEOUT"},
		},
		{
			name:   "PGCONNECT_TIMEOUT negative",
			env:    map[string]string{"PGUSER": "app", "PGCONNECT_TIMEOUT": "-3"},
			fields: []string{"ConnectTimeout"},
		},
		{
			name:   "PGPORT out of range",
			env:    map[string]string{"PGUSER": "app", "PGPORT": "70000"},
			fields: []string{"Port"},
		},
		{
			name:   "NUL in PGPASSWORD",
			env:    map[string]string{"PGUSER": "app", "PGPASSWORD": pw + "\x00"},
			fields: []string{"Password"},
		},
		{
			name:   "missing CA file",
			env:    map[string]string{"PGUSER": "app", "PGSSLROOTCERT": "/nonexistent/" + pw},
			fields: []string{"SSLRootCert"},
		},
		{
			name:   "bad DATABASE_URL does not fall back to PG variables",
			env:    map[string]string{"DATABASE_URL": "mysql://app:" + pw + "@db/orders", "PGUSER": "app"},
			fields: []string{"URL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := configFromEnv(env(tt.env))
			cerr := requireConfigError(t, err)
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("config returned with the error: %#v", c)
			}
			for _, f := range tt.fields {
				if !cerr.Has(f) {
					t.Errorf("error %q does not name %s", cerr, f)
				}
			}
			for _, s := range tt.text {
				if !strings.Contains(cerr.Error(), s) {
					t.Errorf("error %q does not contain %q", cerr, s)
				}
			}
			if strings.Contains(cerr.Error(), pw) {
				t.Errorf("error %q contains the password", cerr)
			}
		})
	}
}

func TestConfigFromEnvReadsProcessEnvironment(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("PGHOST", "db.example")
	t.Setenv("PGPORT", "6000")
	t.Setenv("PGUSER", "envuser")
	t.Setenv("PGDATABASE", "envdb")
	t.Setenv("PGPASSWORD", "envpw")
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGSSLROOTCERT", "")
	t.Setenv("PGSSLCERT", "")
	t.Setenv("PGSSLKEY", "")
	t.Setenv("PGAPPNAME", "")
	t.Setenv("PGCONNECT_TIMEOUT", "")
	got, err := ConfigFromEnv()
	if err != nil {
		t.Fatalf("ConfigFromEnv = %v", err)
	}
	want := Config{Host: "db.example", Port: 6000, User: "envuser", Database: "envdb", Password: "envpw"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ConfigFromEnv\n got %#v\nwant %#v", got, want)
	}
}

// An '@' in a query value is legitimate; one in a query key is the tail of
// an unescaped password.
func TestParseURLAtSignInQuery(t *testing.T) {
	c, err := ParseURL("postgres://app@db/orders?application_name=svc@eu")
	if err != nil || c.ApplicationName != "svc@eu" {
		t.Fatalf("ParseURL = %+v, %v; want application_name svc@eu", c, err)
	}
	_, err = ParseURL("postgres://app:12?Sup3r@db/orders")
	if err == nil || strings.Contains(err.Error(), "Sup3r") || !strings.Contains(err.Error(), "malformed user or password") {
		t.Errorf("ParseURL(password with '?') = %v", err)
	}
}

// TestParseURLSystemCAs: sslrootcert=system, libpq's and pgx's name for the
// system's CAs, parses and reaches pgx as it is.
func TestParseURLSystemCAs(t *testing.T) {
	c, err := ParseURL("postgres://app@db.example.com/orders?sslmode=verify-full&sslrootcert=system")
	if err != nil {
		t.Fatal(err)
	}
	if c.SSLRootCert != "system" || !strings.Contains(c.DSN(), "sslrootcert='system'") {
		t.Errorf("SSLRootCert %q, DSN without sslrootcert=system", c.SSLRootCert)
	}
}

func TestConfigFromEnvTopology(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":        "postgres://app:pw@primary:5432/app",
		"DATABASE_REPLICAS":   "r1:5433, r2 ,[::1]:5434",
		"DATABASE_DIRECT_URL": "postgres://app:pw@direct:5432/app",
	}
	c, err := configFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("configFromEnv: %v", err)
	}
	want := []Replica{{Host: "r1", Port: 5433}, {Host: "r2"}, {Host: "::1", Port: 5434}}
	if !reflect.DeepEqual(c.Replicas, want) {
		t.Errorf("Replicas = %+v, want %+v", c.Replicas, want)
	}
	if c.DirectHost != "direct" || c.DirectPort != 5432 {
		t.Errorf("direct = %s:%d", c.DirectHost, c.DirectPort)
	}
	for _, tt := range []struct{ replicas, direct, field string }{
		{"r1:x", "", "Replicas[0]"},
		{"r1,,r2", "", "Replicas[1]"},
		{"", "postgres://other:s3cr3t-topology@direct/app", "DirectHost"},
		{"", "postgres://app:s3cr3t-topology@direct/otherdb", "DirectHost"},
		{"", "mysql://direct", "DirectHost"},
	} {
		env["DATABASE_REPLICAS"], env["DATABASE_DIRECT_URL"] = tt.replicas, tt.direct
		_, err := configFromEnv(func(k string) string { return env[k] })
		cerr := requireConfigError(t, err)
		if !cerr.Has(tt.field) {
			t.Errorf("%q %q: fields %v, want %s", tt.replicas, tt.direct, fieldNames(cerr), tt.field)
		}
		if strings.Contains(err.Error(), "s3cr3t-topology") {
			t.Errorf("error quotes the password: %v", err)
		}
	}
}
