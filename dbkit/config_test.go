package dbkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// secretMarker is a password no other part of a test config contains, so
// finding it in any output means the password leaked.
const secretMarker = "pw-S3CR3T-7f3a"

// validConfig returns the smallest config that passes Validate.
func validConfig() Config {
	return Config{Host: "db.internal", Database: "app", User: "app"}
}

// requireConfigError asserts that err is a *ConfigError and returns it.
func requireConfigError(t *testing.T, err error) *ConfigError {
	t.Helper()
	if err == nil {
		t.Fatal("got nil error, want *ConfigError")
	}
	var cerr *ConfigError
	if !errors.As(err, &cerr) {
		t.Fatalf("got %T (%v), want *ConfigError", err, err)
	}
	return cerr
}

// fieldNames returns the sorted names of the invalid fields in e.
func fieldNames(e *ConfigError) []string {
	var names []string
	for _, f := range e.Fields {
		names = append(names, f.Field)
	}
	slices.Sort(names)
	return names
}

// clearPGEnv unsets every variable pgconn.ParseConfig reads, so that a
// parsed DSN holds only what the DSN says, and points the password file at
// one that does not exist.
func clearPGEnv(t testing.TB) {
	t.Helper()
	for _, k := range []string{
		"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGAPPNAME",
		"PGCONNECT_TIMEOUT", "PGSSLMODE", "PGSSLKEY", "PGSSLCERT", "PGSSLROOTCERT",
		"PGSSLPASSWORD", "PGSSLNEGOTIATION", "PGSSLCERTMODE", "PGSSLSNI",
		"PGTARGETSESSIONATTRS", "PGSERVICE", "PGSERVICEFILE", "PGTZ", "PGOPTIONS",
		"PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION", "PGCHANNELBINDING", "PGREQUIREAUTH",
	} {
		t.Setenv(k, "") // restores the old value after the test
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "no-such-pgpass"))
}

func TestConfigValidateReportsEveryInvalidField(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")

	tests := []struct {
		name   string
		cfg    Config
		want   []string          // exactly these fields, in any order
		rules  map[string]string // field → rule, for the fields whose rule matters
		nofull bool              // want is a subset: other fields may be reported too
	}{
		{
			name: "everything wrong at once",
			cfg: Config{
				Host:            "",
				Port:            70000,
				Database:        strings.Repeat("d", 64),
				User:            "app",
				Password:        secretMarker + "\x00",
				SSLMode:         "bogus",
				MaxOpenConns:    2,
				MaxIdleConns:    5,
				ConnMaxLifetime: -time.Second,
			},
			want: []string{"ConnMaxLifetime", "Database", "Host", "MaxIdleConns", "Password", "Port", "SSLMode"},
			rules: map[string]string{
				"Host": "required", "Port": "max", "Database": "maxbytes", "SSLMode": "oneof",
				"MaxIdleConns": "ltefield", "ConnMaxLifetime": "min", "Password": "nonul",
			},
		},
		{
			name:  "zero config",
			cfg:   Config{},
			want:  []string{"Database", "Host", "User"},
			rules: map[string]string{"Host": "required", "Database": "required", "User": "required"},
		},
		{name: "negative port", cfg: withCfg(func(c *Config) { c.Port = -1 }), want: []string{"Port"}, rules: map[string]string{"Port": "min"}},
		{name: "port 65536", cfg: withCfg(func(c *Config) { c.Port = 65536 }), want: []string{"Port"}},
		{name: "host too long", cfg: withCfg(func(c *Config) { c.Host = strings.Repeat("h", 256) }), want: []string{"Host"}},
		{name: "user too long", cfg: withCfg(func(c *Config) { c.User = strings.Repeat("u", 64) }), want: []string{"User"}},
		{name: "application name too long", cfg: withCfg(func(c *Config) { c.ApplicationName = strings.Repeat("a", 64) }), want: []string{"ApplicationName"}},
		{name: "connect timeout below 1s", cfg: withCfg(func(c *Config) { c.ConnectTimeout = 500 * time.Millisecond }), want: []string{"ConnectTimeout"}},
		{name: "negative connect timeout", cfg: withCfg(func(c *Config) { c.ConnectTimeout = -time.Second }), want: []string{"ConnectTimeout"}},
		{name: "negative idle time", cfg: withCfg(func(c *Config) { c.ConnMaxIdleTime = -time.Minute }), want: []string{"ConnMaxIdleTime"}},
		{name: "idle conns below -1", cfg: withCfg(func(c *Config) { c.MaxIdleConns = -2 }), want: []string{"MaxIdleConns"}, rules: map[string]string{"MaxIdleConns": "min"}},
		{
			// MaxIdleConns defaults to MaxOpenConns, so it may be reported too.
			name: "negative open conns", cfg: withCfg(func(c *Config) { c.MaxOpenConns = -1 }),
			want: []string{"MaxOpenConns"}, nofull: true,
		},
		{name: "unknown query exec mode", cfg: withCfg(func(c *Config) { c.QueryExecMode = "prepare" }), want: []string{"QueryExecMode"}, rules: map[string]string{"QueryExecMode": "oneof"}},
		{name: "query exec mode in pgx's String form", cfg: withCfg(func(c *Config) { c.QueryExecMode = "simple protocol" }), want: []string{"QueryExecMode"}},
		{name: "missing CA file", cfg: withCfg(func(c *Config) { c.SSLRootCert = missing }), want: []string{"SSLRootCert"}, rules: map[string]string{"SSLRootCert": "cafile"}},
		{name: "missing cert and key", cfg: withCfg(func(c *Config) { c.SSLCert, c.SSLKey = missing, missing }), want: []string{"SSLCert", "SSLKey"}},
		{
			name: "NUL in every string",
			cfg: Config{
				Host: "h\x00", Database: "d\x00", User: "u\x00", Password: "p\x00",
				ApplicationName: "a\x00", SSLRootCert: existing + "\x00",
				SSLCert: existing + "\x00", SSLKey: existing + "\x00",
			},
			want:   []string{"ApplicationName", "Database", "Host", "Password", "SSLCert", "SSLKey", "SSLRootCert", "User"},
			nofull: true, // the file rule may also reject the NUL-suffixed paths
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cerr := requireConfigError(t, tt.cfg.Validate())
			got := fieldNames(cerr)
			want := slices.Sorted(slices.Values(tt.want))
			if tt.nofull {
				for _, f := range want {
					if !cerr.Has(f) {
						t.Errorf("fields %v: missing %s", got, f)
					}
				}
			} else if !slices.Equal(slices.Compact(got), want) {
				t.Errorf("fields = %v, want %v (error: %v)", got, want, cerr)
			}
			for field, rule := range tt.rules {
				if !slices.ContainsFunc(cerr.Fields, func(f FieldError) bool { return f.Field == field && f.Rule == rule }) {
					t.Errorf("no %s error with rule %q in %+v", field, rule, cerr.Fields)
				}
			}
			msg := cerr.Error()
			if !strings.HasPrefix(msg, "dbkit: invalid config: ") {
				t.Errorf("Error() = %q, want prefix %q", msg, "dbkit: invalid config: ")
			}
			for _, f := range cerr.Fields {
				if f.Message == "" {
					t.Errorf("field %s has an empty message", f.Field)
				}
				if !strings.Contains(msg, f.Field+" "+f.Message) {
					t.Errorf("Error() = %q does not contain %q", msg, f.Field+" "+f.Message)
				}
			}
		})
	}
}

func withCfg(adjust func(*Config)) Config {
	c := validConfig()
	adjust(&c)
	return c
}

func TestConfigValidateAccepts(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"minimal, defaults for the rest", validConfig()},
		{"port 0 means default", withCfg(func(c *Config) { c.Port = 0 })},
		{"port bounds", withCfg(func(c *Config) { c.Port = 65535 })},
		{"port 1", withCfg(func(c *Config) { c.Port = 1 })},
		{"unix socket", withCfg(func(c *Config) { c.Host = "/var/run/postgresql" })},
		{"63-char names", withCfg(func(c *Config) {
			c.Database, c.User, c.ApplicationName = strings.Repeat("d", 63), strings.Repeat("u", 63), strings.Repeat("a", 63)
		})},
		{"255-char host", withCfg(func(c *Config) { c.Host = strings.Repeat("h", 255) })},
		{"every sslmode", withCfg(func(c *Config) { c.SSLMode = "verify-full" })},
		{"existing cert files", withCfg(func(c *Config) { c.SSLRootCert, c.SSLCert, c.SSLKey = cert, cert, cert })},
		{"the system's CAs", withCfg(func(c *Config) { c.SSLMode, c.SSLRootCert = "verify-full", "system" })},
		{"idle equals open", withCfg(func(c *Config) { c.MaxOpenConns, c.MaxIdleConns = 3, 3 })},
		{"idle below open", withCfg(func(c *Config) { c.MaxOpenConns, c.MaxIdleConns = 3, 1 })},
		{"1s minimums", withCfg(func(c *Config) {
			c.ConnectTimeout, c.ConnMaxLifetime, c.ConnMaxIdleTime = time.Second, time.Second, time.Second
		})},
		{"password with anything but NUL", withCfg(func(c *Config) { c.Password = "'\"\\ @:/?#%\t€" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
	for _, mode := range SSLModes {
		if err := withCfg(func(c *Config) { c.SSLMode = mode }).Validate(); err != nil {
			t.Errorf("SSLMode %q: Validate() = %v, want nil", mode, err)
		}
	}
	for _, mode := range append([]string{""}, QueryExecModes...) {
		if err := withCfg(func(c *Config) { c.QueryExecMode = mode }).Validate(); err != nil {
			t.Errorf("QueryExecMode %q: Validate() = %v, want nil", mode, err)
		}
	}
}

// PostgreSQL's identifier limit (NAMEDATALEN-1) is 63 bytes, not 63
// characters: a longer name is truncated by the server, possibly in the middle
// of a multi-byte character, and names another database.
func TestConfigValidateNameLimitIsInBytes(t *testing.T) {
	for _, field := range []string{"Database", "User"} {
		c := validConfig()
		name := strings.Repeat("é", 40) // 40 characters, 80 bytes
		if field == "Database" {
			c.Database = name
		} else {
			c.User = name
		}
		cerr := requireConfigError(t, c.Validate())
		if !cerr.Has(field) {
			t.Errorf("%s of %d bytes: fields %v, want %s reported", field, len(name), fieldNames(cerr), field)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	d := validConfig().WithDefaults()
	want := Config{
		Host: "db.internal", Database: "app", User: "app",
		Port: DefaultPort, SSLMode: DefaultSSLMode, ConnectTimeout: DefaultConnectTimeout,
		MaxOpenConns: DefaultMaxOpenConns, MaxIdleConns: DefaultMaxOpenConns,
		ConnMaxLifetime: DefaultConnMaxLifetime, ConnMaxIdleTime: DefaultConnMaxIdleTime,
		QueryExecMode: DefaultQueryExecMode, DeadPeerTimeout: DefaultDeadPeerTimeout,
		ReplicaCheckInterval: DefaultReplicaCheckInterval, MaxReplicaLagBytes: DefaultMaxReplicaLagBytes,
		MaxReplicaLag: DefaultMaxReplicaLag, ReplicaFallback: DefaultReplicaFallback,
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("WithDefaults() = %#v\nwant %#v", configFields(d), configFields(want))
	}

	c := validConfig()
	c.MaxOpenConns = 4
	if got := c.WithDefaults().MaxIdleConns; got != 4 {
		t.Errorf("MaxIdleConns default = %d, want MaxOpenConns (4)", got)
	}
	c.Port, c.ConnMaxLifetime = -1, -time.Second
	if got := c.WithDefaults(); got.Port != -1 || got.ConnMaxLifetime != -time.Second {
		t.Errorf("WithDefaults replaced negative values: Port %d, ConnMaxLifetime %v", got.Port, got.ConnMaxLifetime)
	}
}

func TestConfigErrorNeverContainsValues(t *testing.T) {
	// Every bad field holds the marker, and so does the password next to them.
	cfgs := []Config{
		{
			Host:            strings.Repeat(secretMarker, 20),
			Database:        strings.Repeat(secretMarker, 5),
			User:            strings.Repeat(secretMarker, 5),
			Password:        secretMarker,
			SSLMode:         secretMarker,
			ApplicationName: strings.Repeat(secretMarker, 5),
			SSLRootCert:     "/nonexistent/" + secretMarker,
			Port:            70000,
			QueryExecMode:   secretMarker,
		},
		{Host: "h", Database: "d", User: "u", Password: secretMarker + "\x00" + secretMarker},
		{Password: secretMarker, MaxOpenConns: 1, MaxIdleConns: 2},
	}
	for i, c := range cfgs {
		cerr := requireConfigError(t, c.Validate())
		if msg := cerr.Error(); strings.Contains(msg, secretMarker) {
			t.Errorf("config %d: Error() contains a value: %q", i, msg)
		}
		for _, f := range cerr.Fields {
			if strings.Contains(f.Message, secretMarker) || strings.Contains(f.Rule, secretMarker) {
				t.Errorf("config %d: field error %+v contains a value", i, f)
			}
		}
	}
}

func TestConfigErrorHas(t *testing.T) {
	e := &ConfigError{Fields: []FieldError{{Field: "Port"}, {Field: "Host"}}}
	for field, want := range map[string]bool{"Port": true, "Host": true, "User": false, "": false, "port": false} {
		if got := e.Has(field); !reflect.DeepEqual(got, want) {
			t.Errorf("Has(%q) = %v, want %v", field, got, want)
		}
	}
}

// awkward holds strings that break naive quoting in a DSN or a URL.
var awkward = []string{
	"plain",
	"p@ss:w/rd?x#y",
	"100%",
	"%41%zz",
	`it's`,
	`say "hi"`,
	`back\slash`,
	`trailing\`,
	`\\`,
	`\'`,
	`'`,
	"with space",
	"tab\there",
	"new\nline",
	" leading",
	"trailing ",
	"  ",
	"ünïcödé 密码 🔑",
	"a=b c=d",
	"host=evil",
	"' host='evil",
	`\' sslmode='disable`,
	"&;$`|<>",
}

func TestConfigDSNRoundTrip(t *testing.T) {
	clearPGEnv(t)
	type testCase struct {
		name string
		cfg  Config
	}
	var tests []testCase
	for _, s := range awkward {
		tests = append(tests,
			testCase{"password " + s, withCfg(func(c *Config) { c.Password = s })},
			testCase{"user " + s, withCfg(func(c *Config) { c.User = s })},
			testCase{"database " + s, withCfg(func(c *Config) { c.Database = s })},
			testCase{"application_name " + s, withCfg(func(c *Config) { c.ApplicationName = s })},
		)
	}
	tests = append(tests,
		testCase{"unix socket", withCfg(func(c *Config) { c.Host = "/var/run/postgresql" })},
		testCase{"ipv6", withCfg(func(c *Config) { c.Host = "::1"; c.Port = 6432 })},
		testCase{"all at once", Config{
			Host: "db.internal", Port: 6543, Database: `d'b\`, User: `u s"r`, Password: `p'@\ss `,
			SSLMode: "disable", ApplicationName: "api", ConnectTimeout: 5 * time.Second,
		}},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDSNRoundTrip(t, tt.cfg)
		})
	}
}

// checkDSNRoundTrip parses c.DSN() with pgconn and compares every field the
// DSN sets.
func checkDSNRoundTrip(t testing.TB, c Config) {
	t.Helper()
	pc, err := pgconn.ParseConfig(c.DSN())
	if err != nil {
		t.Fatalf("pgconn.ParseConfig(DSN) for %#v: %v", c, err)
	}
	d := c.WithDefaults()
	if pc.Host != d.Host {
		t.Errorf("Host = %q, want %q", pc.Host, d.Host)
	}
	if int(pc.Port) != d.Port {
		t.Errorf("Port = %d, want %d", pc.Port, d.Port)
	}
	if pc.Database != d.Database {
		t.Errorf("Database = %q, want %q", pc.Database, d.Database)
	}
	if pc.User != d.User {
		t.Errorf("User = %q, want %q", pc.User, d.User)
	}
	if pc.Password != d.Password {
		t.Errorf("Password = %q, want %q", pc.Password, d.Password)
	}
	if got := pc.RuntimeParams["application_name"]; got != d.ApplicationName {
		t.Errorf("application_name = %q, want %q", got, d.ApplicationName)
	}
	if want := time.Duration(dialTimeoutSeconds(d.ConnectTimeout)) * time.Second; pc.ConnectTimeout != want {
		t.Errorf("ConnectTimeout = %v, want %v", pc.ConnectTimeout, want)
	}
}

func TestConfigDSNSSLModeAndTimeout(t *testing.T) {
	clearPGEnv(t)
	tests := []struct {
		timeout time.Duration
		wantSec string
	}{
		{0, "connect_timeout='30'"},
		{time.Second, "connect_timeout='2'"}, // libpq's minimum
		{2500 * time.Millisecond, "connect_timeout='3'"},
		{10 * time.Second, "connect_timeout='10'"},
	}
	for _, tt := range tests {
		c := withCfg(func(c *Config) { c.ConnectTimeout = tt.timeout })
		if dsn := c.DSN(); !strings.Contains(dsn, tt.wantSec) {
			t.Errorf("ConnectTimeout %v: DSN %q lacks %s", tt.timeout, dsn, tt.wantSec)
		}
	}
	for _, mode := range []string{"disable", "require", "verify-full"} {
		c := withCfg(func(c *Config) { c.SSLMode = mode })
		pc, err := pgconn.ParseConfig(c.DSN())
		if err != nil {
			t.Fatalf("sslmode %s: %v", mode, err)
		}
		if (pc.TLSConfig == nil) != (mode == "disable") {
			t.Errorf("sslmode %s: TLSConfig = %v", mode, pc.TLSConfig)
		}
	}
	if dsn := validConfig().DSN(); strings.Contains(dsn, "password=") {
		t.Errorf("DSN without a password has a password keyword: %q", dsn)
	}
}

// Connect builds pgx's settings with pgx.ParseConfig(cfg.DSN()), so the DSN
// is what makes QueryExecMode take effect.
func TestConfigDSNQueryExecModeReachesPgx(t *testing.T) {
	clearPGEnv(t)
	want := map[string]pgx.QueryExecMode{
		"":                pgx.QueryExecModeCacheStatement, // pgx's default
		"cache_statement": pgx.QueryExecModeCacheStatement,
		"cache_describe":  pgx.QueryExecModeCacheDescribe,
		"describe_exec":   pgx.QueryExecModeDescribeExec,
		"exec":            pgx.QueryExecModeExec,
		"simple_protocol": pgx.QueryExecModeSimpleProtocol,
	}
	if len(want) != len(QueryExecModes)+1 {
		t.Fatalf("QueryExecModes = %v; the test covers %d modes", QueryExecModes, len(want)-1)
	}
	for mode, wantMode := range want {
		c := withCfg(func(c *Config) { c.QueryExecMode = mode; c.Password = "it's" })
		cc, err := pgx.ParseConfig(c.DSN())
		if err != nil {
			t.Errorf("QueryExecMode %q: pgx.ParseConfig(DSN) = %v", mode, err)
			continue
		}
		if cc.DefaultQueryExecMode != wantMode {
			t.Errorf("QueryExecMode %q: pgx DefaultQueryExecMode = %v, want %v", mode, cc.DefaultQueryExecMode, wantMode)
		}
		// pgx takes it out of the parameters it sends to the server.
		if _, ok := cc.RuntimeParams["default_query_exec_mode"]; ok {
			t.Errorf("QueryExecMode %q: default_query_exec_mode left in RuntimeParams", mode)
		}
	}
	// pgx's default is not written, so that the DSN stays one libpq,
	// psql and lib/pq accept: they do not know pgx's keyword.
	for _, mode := range []string{"", DefaultQueryExecMode} {
		if dsn := withCfg(func(c *Config) { c.QueryExecMode = mode }).DSN(); strings.Contains(dsn, "default_query_exec_mode") {
			t.Errorf("QueryExecMode %q: DSN %q names pgx's default", mode, dsn)
		}
	}
}

func TestConfigAddr(t *testing.T) {
	tests := []struct {
		host string
		port int
		want string
	}{
		{"db.internal", 0, "db.internal:5432"},
		{"db.internal", 6432, "db.internal:6432"},
		{"::1", 0, "[::1]:5432"},
		{"/var/run/postgresql", 0, "/var/run/postgresql:5432"},
	}
	for _, tt := range tests {
		c := withCfg(func(c *Config) { c.Host, c.Port = tt.host, tt.port })
		if got := c.Addr(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Addr(%q, %d) = %q, want %q", tt.host, tt.port, got, tt.want)
		}
	}
}

// secretConfig is a config whose password is the marker and whose other
// fields do not contain it.
func secretConfig() Config {
	c := validConfig()
	c.Password = secretMarker
	c.ApplicationName = "api"
	return c
}

// renderings returns every way a Config is commonly printed.
func renderings(t *testing.T, c Config) map[string]string {
	t.Helper()
	out := map[string]string{
		"String":        c.String(),
		"GoString":      c.GoString(),
		"%v":            fmt.Sprintf("%v", c),
		"%+v":           fmt.Sprintf("%+v", c),
		"%#v":           fmt.Sprintf("%#v", c),
		"%s":            fmt.Sprintf("%s", c), //nolint:staticcheck // the %s verb is what is tested
		"%q":            fmt.Sprintf("%q", c),
		"pointer %v":    fmt.Sprintf("%v", &c),
		"pointer %+v":   fmt.Sprintf("%+v", &c),
		"pointer %#v":   fmt.Sprintf("%#v", &c),
		"nested %v":     fmt.Sprintf("%v", struct{ DB Config }{c}),
		"nested %+v":    fmt.Sprintf("%+v", struct{ DB Config }{c}),
		"nested %#v":    fmt.Sprintf("%#v", struct{ DB Config }{c}),
		"slice %v":      fmt.Sprintf("%v", []Config{c}),
		"error wrap %v": fmt.Errorf("open %v: %w", c, errors.New("boom")).Error(),
	}
	for name, v := range map[string]any{"json": c, "json pointer": &c, "json nested": map[string]any{"db": c}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = string(b)
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		logger := slog.New(h(&buf))
		logger.Info("connecting", "db", c)
		logger.Info("connecting", "db", &c)
		logger.Info("connecting", slog.Any("db", c))
		logger.With("cfg", c).Info("with")
		out[name] = buf.String()
	}
	return out
}

func TestConfigRedactsPassword(t *testing.T) {
	c := secretConfig()
	for name, s := range renderings(t, c) {
		if strings.Contains(s, secretMarker) {
			t.Errorf("%s leaks the password: %s", name, s)
		}
		if s == "" {
			t.Errorf("%s rendered nothing", name)
		}
	}
	// The output still says where the database is.
	r := renderings(t, c)
	for _, name := range []string{"String", "GoString", "json", "slog json", "slog text"} {
		if !strings.Contains(r[name], "db.internal") {
			t.Errorf("%s does not name the host: %s", name, r[name])
		}
	}
	// The DSN is the one form that carries it.
	if !strings.Contains(c.DSN(), secretMarker) {
		t.Errorf("DSN() lacks the password: %q", c.DSN())
	}
	// Printing must not have changed the config.
	if c.Password != secretMarker {
		t.Errorf("Password changed to %q", c.Password)
	}
}

func TestConfigRedactionShowsWhetherPasswordIsSet(t *testing.T) {
	with, without := secretConfig(), validConfig()
	var j struct{ Password string }
	b, _ := json.Marshal(with)
	if err := json.Unmarshal(b, &j); err != nil || j.Password != redacted {
		t.Errorf("json Password = %q (%v), want %q", j.Password, err, redacted)
	}
	b, _ = json.Marshal(without)
	if err := json.Unmarshal(b, &j); err != nil || j.Password != "" {
		t.Errorf("json Password without one = %q (%v), want empty", j.Password, err)
	}
	if gs := with.GoString(); !strings.HasPrefix(gs, "dbkit.Config{") || !strings.Contains(gs, `Password:"[REDACTED]"`) {
		t.Errorf("GoString() = %s", gs)
	}
	if gs := without.GoString(); strings.Contains(gs, `Password:`) {
		t.Errorf("GoString() without password = %s", gs)
	}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "db", with)
	var rec struct{ DB map[string]any }
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("slog json output %q: %v", buf.String(), err)
	}
	want := map[string]any{
		"host": "db.internal", "port": float64(5432), "database": "app", "user": "app",
		"sslmode": "prefer", "password": redacted, "application_name": "api",
		"max_open_conns": float64(10), "max_idle_conns": float64(10),
		"default_query_exec_mode": DefaultQueryExecMode,
	}
	for k, v := range want {
		if rec.DB[k] != v {
			t.Errorf("slog db.%s = %v, want %v", k, rec.DB[k], v)
		}
	}
	buf.Reset()
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "db", without)
	if strings.Contains(buf.String(), "password") {
		t.Errorf("slog text without a password mentions one: %s", buf.String())
	}
}

func TestConfigStringIsRedactedURL(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, u *url.URL)
	}{
		{
			name: "tcp with password",
			cfg:  secretConfig(),
			check: func(t *testing.T, u *url.URL) {
				if pw, ok := u.User.Password(); !ok || pw != redacted {
					t.Errorf("password = %q, %v; want %q", pw, ok, redacted)
				}
				if u.Host != "db.internal:5432" || u.Path != "/app" {
					t.Errorf("host %q path %q", u.Host, u.Path)
				}
				if q := u.Query(); q.Get("sslmode") != "prefer" || q.Get("application_name") != "api" {
					t.Errorf("query = %v", q)
				}
			},
		},
		{
			name: "no password",
			cfg:  validConfig(),
			check: func(t *testing.T, u *url.URL) {
				if _, ok := u.User.Password(); ok {
					t.Errorf("URL %s has a password", u)
				}
				if u.User.Username() != "app" {
					t.Errorf("user = %q", u.User.Username())
				}
			},
		},
		{
			name: "unix socket",
			cfg:  withCfg(func(c *Config) { c.Host = "/var/run/postgresql"; c.Password = secretMarker }),
			check: func(t *testing.T, u *url.URL) {
				if got := u.Query().Get("host"); got != "/var/run/postgresql" {
					t.Errorf("host param = %q", got)
				}
				if u.Port() != "5432" {
					t.Errorf("port = %q", u.Port())
				}
			},
		},
		{
			name: "ipv6",
			cfg:  withCfg(func(c *Config) { c.Host = "::1" }),
			check: func(t *testing.T, u *url.URL) {
				if u.Hostname() != "::1" || u.Port() != "5432" {
					t.Errorf("host %q port %q", u.Hostname(), u.Port())
				}
			},
		},
		{
			name: "query exec mode",
			cfg:  withCfg(func(c *Config) { c.QueryExecMode = "exec"; c.Password = secretMarker }),
			check: func(t *testing.T, u *url.URL) {
				if got := u.Query().Get("default_query_exec_mode"); got != "exec" {
					t.Errorf("default_query_exec_mode = %q, want exec", got)
				}
			},
		},
		{
			name: "pgx's default query exec mode is not shown",
			cfg:  withCfg(func(c *Config) { c.QueryExecMode = DefaultQueryExecMode }),
			check: func(t *testing.T, u *url.URL) {
				if u.Query().Has("default_query_exec_mode") {
					t.Errorf("URL %s shows the default query exec mode", u)
				}
			},
		},
		{
			name: "awkward user and database",
			cfg:  withCfg(func(c *Config) { c.User = "a@b:c"; c.Database = "d/b?x#y"; c.Password = "x" }),
			check: func(t *testing.T, u *url.URL) {
				if u.User.Username() != "a@b:c" || u.Path != "/d/b?x#y" {
					t.Errorf("user %q path %q", u.User.Username(), u.Path)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.cfg.String()
			if !strings.HasPrefix(s, "postgres://") {
				t.Fatalf("String() = %q, want a postgres:// URL", s)
			}
			if hasPw := tt.cfg.Password != ""; strings.Contains(s, ":"+redacted+"@") != hasPw {
				t.Errorf("String() = %q: shows %s %v, want %v", s, redacted, !hasPw, hasPw)
			}
			u, err := url.Parse(parseableRedaction(s))
			if err != nil {
				t.Fatalf("String() = %q does not parse: %v", s, err)
			}
			tt.check(t, u)
			// The rest of it reads back with ParseURL.
			back, err := ParseURL(parseableRedaction(s))
			if err != nil {
				t.Fatalf("ParseURL(String()) = %v", err)
			}
			want := tt.cfg
			if want.Password != "" {
				want.Password = redacted
			}
			if back.Host != want.Host || back.Database != want.Database || back.User != want.User || back.Password != want.Password ||
				back.WithDefaults().QueryExecMode != want.WithDefaults().QueryExecMode {
				t.Errorf("ParseURL(String()) = %#v, want %#v", back, want)
			}
		})
	}
}

// parseableRedaction percent-encodes the brackets of the "[REDACTED]" that
// Config.String writes literally for people to read, which url.Parse refuses
// in a userinfo.
func parseableRedaction(s string) string {
	return strings.Replace(s, ":"+redacted+"@", ":"+url.PathEscape(redacted)+"@", 1)
}

// The doc of Config.String promises the password "replaced by [REDACTED]";
// a reader of a log should see that, not its percent-encoding.
func TestConfigStringShowsRedactedLiterally(t *testing.T) {
	for _, c := range []Config{secretConfig(), withCfg(func(c *Config) { c.User = "a b@c"; c.Password = "x" })} {
		s := c.String()
		if !strings.Contains(s, ":"+redacted+"@") {
			t.Errorf("String() = %q does not show %s", s, redacted)
		}
	}
}

// MaxIdleConns -1 keeps no connection idle (database/sql's meaning of a
// non-positive value); 0 means the default.
func TestConfigMaxIdleConnsMinusOneMeansNone(t *testing.T) {
	c := validConfig()
	c.MaxIdleConns = -1
	if err := c.Validate(); err != nil {
		t.Fatalf("MaxIdleConns -1: %v", err)
	}
	if got := c.WithDefaults().MaxIdleConns; got != -1 {
		t.Errorf("WithDefaults kept MaxIdleConns %d, want -1", got)
	}
}

func TestConfigServerLimits(t *testing.T) {
	c := validConfig()
	c.StatementTimeout, c.LockTimeout, c.IdleInTransactionTimeout = 5*time.Second, 1500*time.Millisecond, time.Minute
	cfg, err := pgx.ParseConfig(c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.RuntimeParams["options"], "-c statement_timeout=5000 -c lock_timeout=1500 -c idle_in_transaction_session_timeout=60000"; !reflect.DeepEqual(got, want) {
		t.Errorf("options = %q, want %q", got, want)
	}
	if _, ok := pgxRuntimeOptions(validConfig()); ok {
		t.Error("a Config without limits sends options")
	}
	for _, bad := range []time.Duration{-time.Second, time.Microsecond} {
		c := validConfig()
		c.StatementTimeout = bad
		if cerr := requireConfigError(t, c.Validate()); !cerr.Has("StatementTimeout") {
			t.Errorf("StatementTimeout %v: fields %v, want it reported", bad, fieldNames(cerr))
		}
	}
}

// pgxRuntimeOptions returns the options pgx sends for c, if any.
func pgxRuntimeOptions(c Config) (string, bool) {
	cfg, err := pgx.ParseConfig(c.DSN())
	if err != nil {
		return "", false
	}
	o, ok := cfg.RuntimeParams["options"]
	return o, ok
}

func TestConfigReplicas(t *testing.T) {
	c := validConfig()
	c.Replicas = []Replica{{Host: "r1"}, {Host: "r2", Port: 5433, Name: "east"}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	d := c.WithDefaults()
	if d.Replicas[0].Port != DefaultPort || d.Replicas[1].Port != 5433 {
		t.Errorf("replica ports after defaults: %+v", d.Replicas)
	}
	if c.Replicas[0].Port != 0 {
		t.Errorf("WithDefaults changed the caller's Replicas: %+v", c.Replicas)
	}
	r := d.at("r2", 5433)
	if r.Host != "r2" || r.Port != 5433 || r.Database != c.Database || r.User != c.User || r.Replicas != nil {
		t.Errorf("at(r2, 5433) = %#v", r)
	}
	for _, tt := range []struct {
		name  string
		reps  []Replica
		field string
	}{
		{"no host", []Replica{{Port: 5433}}, "Replicas[0].Host"},
		{"bad port", []Replica{{Host: "r1"}, {Host: "r2", Port: 70000}}, "Replicas[1].Port"},
		{"twice", []Replica{{Host: "r1"}, {Host: "r1", Port: 5432}}, "Replicas[1]"},
		{"NUL", []Replica{{Host: "r\x00"}}, "Replicas[0]"},
	} {
		c := validConfig()
		c.Replicas = tt.reps
		cerr := requireConfigError(t, c.Validate())
		if !cerr.Has(tt.field) {
			t.Errorf("%s: fields %v, want %s", tt.name, fieldNames(cerr), tt.field)
		}
	}
	for _, tt := range []struct {
		name  string
		set   func(*Config)
		field string
	}{
		{"interval", func(c *Config) { c.ReplicaCheckInterval = time.Millisecond }, "ReplicaCheckInterval"},
		{"lag bytes", func(c *Config) { c.MaxReplicaLagBytes = -1 }, "MaxReplicaLagBytes"},
		{"lag", func(c *Config) { c.MaxReplicaLag = -time.Second }, "MaxReplicaLag"},
		{"fallback", func(c *Config) { c.ReplicaFallback = "replica" }, "ReplicaFallback"},
		{"direct port", func(c *Config) { c.DirectHost, c.DirectPort = "db", -1 }, "DirectPort"},
	} {
		c := validConfig()
		tt.set(&c)
		cerr := requireConfigError(t, c.Validate())
		if !cerr.Has(tt.field) {
			t.Errorf("%s: fields %v, want %s", tt.name, fieldNames(cerr), tt.field)
		}
	}
	c = validConfig()
	c.DirectHost = "db-direct"
	if got := c.WithDefaults().directConfig().Addr(); got != "db-direct:5432" {
		t.Errorf("direct address = %s", got)
	}
}

func TestConfigFallbacksDSN(t *testing.T) {
	c := validConfig()
	c.Port = 5433
	c.Fallbacks = []Endpoint{{Host: "db2"}, {Host: "db3", Port: 6000}}
	c.TargetSessionAttrs = "read-write"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dsn := c.DSN()
	for _, want := range []string{"host='db.internal,db2,db3'", "port='5433,5432,6000'", "target_session_attrs='read-write'"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN %q lacks %s", dsn, want)
		}
	}
	back, err := ParseURL(c.String())
	if err != nil || !reflect.DeepEqual(back.Fallbacks, []Endpoint{{Host: "db2", Port: 5432}, {Host: "db3", Port: 6000}}) || back.TargetSessionAttrs != "read-write" {
		t.Errorf("ParseURL(String()) = %#v, %v", back, err)
	}
	c.Host = "a,b"
	if cerr := requireConfigError(t, c.Validate()); !cerr.Has("Host") {
		t.Errorf("a comma in Host: fields %v", fieldNames(cerr))
	}
}

// String gives a URL ParseURL reads back with the same servers, whatever
// they are: names, Unix socket directories, IPv6 addresses. (Found in
// review: a socket directory's Fallbacks were dropped, a socket fallback
// read back as a host named "%2Ftmp".)
func TestConfigStringRoundTripsServers(t *testing.T) {
	for _, c := range []Config{
		{Host: "db1", Port: 5432, Fallbacks: []Endpoint{{Host: "db2", Port: 5433}}, TargetSessionAttrs: "read-write"},
		{Host: "/var/run/postgresql", Port: 5432, Fallbacks: []Endpoint{{Host: "db2", Port: 5433}}},
		{Host: "db1", Port: 5432, Fallbacks: []Endpoint{{Host: "/tmp", Port: 5433}}},
		{Host: "::1", Port: 5432, Fallbacks: []Endpoint{{Host: "fe80::1", Port: 5433}}},
	} {
		c.Database, c.User, c.Password = "d", "u", "p"
		s := strings.Replace(c.String(), redacted, "p", 1)
		got, err := ParseURL(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		w, g := c.WithDefaults(), got.WithDefaults()
		if w.Host != g.Host || w.Port != g.Port || !reflect.DeepEqual(w.Fallbacks, g.Fallbacks) || w.TargetSessionAttrs != g.TargetSessionAttrs {
			t.Errorf("%s reads back as %s:%d, fallbacks %+v, %q", s, g.Host, g.Port, g.Fallbacks, g.TargetSessionAttrs)
		}
	}
}

// PGTARGETSESSIONATTRS in the environment does not reach a DSN: pgx would
// take it for a setting the DSN leaves out, and a replica's pool (whose
// Config says nothing of session attributes) would refuse its standby.
func TestConfigDSNTargetSessionAttrsNotFromEnvironment(t *testing.T) {
	clearPGEnv(t)
	t.Setenv("PGTARGETSESSIONATTRS", "read-write")
	primary := withCfg(func(c *Config) { c.TargetSessionAttrs = "any" })
	for name, c := range map[string]Config{
		"TargetSessionAttrs any": primary,
		"unset":                  withCfg(func(c *Config) {}),
		"a replica's pool":       withCfg(func(c *Config) { c.TargetSessionAttrs = "read-write" }).at("replica", 5433),
	} {
		cc, err := pgx.ParseConfig(c.DSN())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cc.ValidateConnect != nil {
			t.Errorf("%s: pgx validates the session's attributes (from PGTARGETSESSIONATTRS)", name)
		}
	}
}
