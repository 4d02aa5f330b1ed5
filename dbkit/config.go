package dbkit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-playground/validator/v10"
)

// Defaults applied by [Config.WithDefaults] to fields left at their zero value.
const (
	DefaultPort            = 5432
	DefaultSSLMode         = "prefer"
	DefaultConnectTimeout  = 30 * time.Second
	DefaultMaxOpenConns    = 10
	DefaultConnMaxLifetime = 30 * time.Minute
	DefaultConnMaxIdleTime = 5 * time.Minute
	DefaultQueryExecMode   = "cache_statement" // pgx's own default
	DefaultDeadPeerTimeout = 30 * time.Second

	// Read replicas (see [Config.Replicas] and docs/scaling.md).
	DefaultReplicaCheckInterval = time.Second
	DefaultMaxReplicaLagBytes   = 8 << 20 // 8 MiB of WAL, GitLab's max_replication_difference
	DefaultMaxReplicaLag        = 60 * time.Second
	DefaultReplicaFallback      = "primary"
)

// SSLModes lists the values libpq accepts for sslmode, weakest first.
var SSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// QueryExecModes lists the values pgx v5 accepts for default_query_exec_mode,
// in the order of pgx's QueryExecMode constants. See [Config.QueryExecMode].
var QueryExecModes = []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"}

const redacted = "[REDACTED]"

// Config says where the database is and how to pool connections to it.
//
// Zero values mean "use the default": Port 5432, SSLMode "prefer",
// ConnectTimeout 30s, MaxOpenConns 10, MaxIdleConns equal to MaxOpenConns,
// ConnMaxLifetime 30m, ConnMaxIdleTime 5m, QueryExecMode "cache_statement",
// DeadPeerTimeout 30s, and no server-side timeouts.
// Negative values are invalid, except MaxIdleConns -1, which keeps no
// connection idle.
//
// A Config never shows its password: [Config.String], [Config.LogValue],
// [Config.GoString], [Config.MarshalJSON] and [ConfigError] all redact it.
// Only [Config.DSN] contains it, because it is the connection string itself.
type Config struct {
	Host string `validate:"required,maxbytes=255"` // host name, IP address, or Unix socket directory (starts with '/')
	Port int    `validate:"min=1,max=65535"`
	// Fallbacks are other servers of the same cluster, tried in order
	// after Host:Port whenever a connection is made (libpq's and pgx's
	// multi-host list, "host1:port1,host2:port2"): with TargetSessionAttrs
	// "read-write", a pool that lost its primary to a failover finds the
	// new one. See docs/ha.md.
	Fallbacks []Endpoint `validate:"dive"`
	// TargetSessionAttrs is which of those servers a connection may settle
	// on, as libpq's target_session_attrs: "any" (the default: the first
	// that answers), "read-write", "read-only", "primary", "standby" or
	// "prefer-standby".
	TargetSessionAttrs string `validate:"omitempty,oneof=any read-write read-only primary standby prefer-standby"`
	Database           string `validate:"required,maxbytes=63"` // PostgreSQL names are at most 63 bytes
	User               string `validate:"required,maxbytes=63"`
	Password           string

	SSLMode     string `validate:"oneof=disable allow prefer require verify-ca verify-full"`
	SSLRootCert string `validate:"omitempty,cafile"` // CA certificate file, or "system" for the system's CAs (sslrootcert)
	SSLCert     string `validate:"omitempty,file"`   // client certificate file (sslcert)
	SSLKey      string `validate:"omitempty,file"`   // client key file (sslkey)

	// ApplicationName is reported to the server (pg_stat_activity).
	ApplicationName string `validate:"maxbytes=63"`

	// ConnectTimeout bounds establishing a connection: each dial, and Connect's
	// retries in total while the server is unreachable or still starting.
	ConnectTimeout time.Duration `validate:"min=1s"`

	MaxOpenConns    int           `validate:"min=1"`
	MaxIdleConns    int           `validate:"min=-1"` // at most MaxOpenConns; -1 keeps none idle
	ConnMaxLifetime time.Duration `validate:"min=1s"`
	ConnMaxIdleTime time.Duration `validate:"min=1s"`

	// QueryExecMode is how pgx sends each statement, under pgx's own name
	// (default_query_exec_mode in a URL): one of [QueryExecModes]. Empty
	// means pgx's default, "cache_statement": named prepared statements
	// cached per connection. Behind PgBouncer in transaction pooling mode
	// without prepared statement support, use "exec" or "simple_protocol".
	// docs/configuration.md says what each mode costs and when to pick it.
	QueryExecMode string `validate:"oneof=cache_statement cache_describe describe_exec exec simple_protocol"`

	// Limits the server enforces on every session of the pool, sent when
	// the session starts (libpq's options): StatementTimeout ends a
	// statement that runs longer (statement_timeout, SQLSTATE 57014),
	// LockTimeout one that waits longer for a lock (lock_timeout, 55P03),
	// IdleInTransactionTimeout a session left idle inside a transaction
	// longer (idle_in_transaction_session_timeout, 25P03): the transaction
	// is rolled back and the connection closed. Zero keeps the server's
	// setting (none, unless its configuration sets one). They are rounded
	// down to whole milliseconds; under a millisecond is invalid.
	StatementTimeout         time.Duration `validate:"eq=0|min=1ms"`
	LockTimeout              time.Duration `validate:"eq=0|min=1ms"`
	IdleInTransactionTimeout time.Duration `validate:"eq=0|min=1ms"`

	// DeadPeerTimeout bounds how long a connection whose server vanished
	// (a host that died, a network that dropped, no FIN) goes on blocking a
	// call that has no deadline: TCP keepalive probes start after half of
	// it and give up by its end, and data unacknowledged for that long
	// drops the connection (TCP_USER_TIMEOUT, Linux only). Default 30s.
	DeadPeerTimeout time.Duration `validate:"min=1s"`

	// Replicas are streaming standbys of this server (its read replicas).
	// With a cluster whose primary moves (Fallbacks), name every node: the
	// one that is not a standby is left out of the rotation.
	// With at least one, the repository's reads (Get, Find, FindOne,
	// FindPage, FindCursor, Count, Exists) go to a healthy replica, except
	// inside a transaction, with a row lock, under [OnPrimary], or when
	// the caller's [Session] wrote something no replica has replayed yet;
	// everything else goes to this server, the primary. Each replica has a
	// pool of its own with the primary's settings (database, user,
	// password, TLS, limits, pool sizes). docs/scaling.md explains it.
	Replicas []Replica `validate:"dive"`
	// ReplicaCheckInterval is how often each replica's health and lag are
	// measured (default 1s).
	ReplicaCheckInterval time.Duration `validate:"min=10ms"`
	// A replica whose replay is more than MaxReplicaLagBytes of WAL (default
	// 8 MiB) or MaxReplicaLag (default 60s) behind the primary leaves the
	// rotation until it catches up.
	MaxReplicaLagBytes int64         `validate:"min=1"`
	MaxReplicaLag      time.Duration `validate:"min=1ms"`
	// ReplicaFallback says where reads go when no replica is in the
	// rotation: "primary" (the default) or "refuse", which fails them with
	// an error matching [ErrUnavailable] instead of loading the primary.
	ReplicaFallback string `validate:"oneof=primary refuse"`

	// DirectHost and DirectPort name the server itself when Host and Port
	// name a connection pooler in transaction mode (PgBouncer): migrations
	// and their session advisory lock, which such a pooler breaks, run on
	// a connection of their own to it. Empty: migrations use Host and
	// Port, and refuse to run through a transaction pooler. DirectPort
	// defaults to 5432.
	DirectHost string `validate:"maxbytes=255"`
	DirectPort int    `validate:"min=0,max=65535"`
}

// Endpoint is a server's address: a host name, IP address or Unix socket
// directory, and a port (0: 5432).
type Endpoint struct {
	Host string `validate:"required,maxbytes=255"`
	Port int    `validate:"min=0,max=65535"`
}

// Addr returns host:port, 5432 when Port is 0.
func (e Endpoint) Addr() string {
	port := e.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(e.Host, strconv.Itoa(port))
}

// Replica is a read replica of the primary [Config] names: a streaming
// standby. Everything but its address comes from the primary's Config.
type Replica struct {
	Host string `validate:"required,maxbytes=255"`
	Port int    `validate:"min=0,max=65535"` // 0: 5432
	// Name names its pool in metrics and logs (db.client.connection.pool.name);
	// default host:port/database.
	Name string `validate:"maxbytes=255"`
}

// Addr returns the replica's host:port, 5432 when Port is 0.
func (r Replica) Addr() string { return Endpoint{Host: r.Host, Port: r.Port}.Addr() }

// WithDefaults returns a copy of c with every zero-valued setting replaced by
// its default. Negative values are kept so that Validate reports them.
func (c Config) WithDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.SSLMode == "" {
		c.SSLMode = DefaultSSLMode
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.MaxIdleConns == 0 && c.MaxOpenConns > 0 {
		c.MaxIdleConns = c.MaxOpenConns
	}
	if c.ConnMaxLifetime == 0 {
		c.ConnMaxLifetime = DefaultConnMaxLifetime
	}
	if c.ConnMaxIdleTime == 0 {
		c.ConnMaxIdleTime = DefaultConnMaxIdleTime
	}
	if c.QueryExecMode == "" {
		c.QueryExecMode = DefaultQueryExecMode
	}
	if c.DeadPeerTimeout == 0 {
		c.DeadPeerTimeout = DefaultDeadPeerTimeout
	}
	if c.ReplicaCheckInterval == 0 {
		c.ReplicaCheckInterval = DefaultReplicaCheckInterval
	}
	if c.MaxReplicaLagBytes == 0 {
		c.MaxReplicaLagBytes = DefaultMaxReplicaLagBytes
	}
	if c.MaxReplicaLag == 0 {
		c.MaxReplicaLag = DefaultMaxReplicaLag
	}
	if c.ReplicaFallback == "" {
		c.ReplicaFallback = DefaultReplicaFallback
	}
	if c.DirectHost != "" && c.DirectPort == 0 {
		c.DirectPort = DefaultPort
	}
	if len(c.Fallbacks) > 0 {
		c.Fallbacks = slices.Clone(c.Fallbacks)
		for i := range c.Fallbacks {
			if c.Fallbacks[i].Port == 0 {
				c.Fallbacks[i].Port = DefaultPort
			}
		}
	}
	if len(c.Replicas) > 0 {
		c.Replicas = slices.Clone(c.Replicas)
		for i := range c.Replicas {
			if c.Replicas[i].Port == 0 {
				c.Replicas[i].Port = DefaultPort
			}
		}
	}
	return c
}

var validate = sync.OnceValue(func() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	// PostgreSQL limits names in bytes (NAMEDATALEN-1); validator's max
	// counts characters.
	_ = v.RegisterValidation("maxbytes", func(fl validator.FieldLevel) bool {
		n, err := strconv.Atoi(fl.Param())
		return err == nil && len(fl.Field().String()) <= n
	})
	// sslrootcert: a file, or libpq's and pgx's "system", the system's CAs.
	_ = v.RegisterValidation("cafile", func(fl validator.FieldLevel) bool {
		name := fl.Field().String()
		if name == "system" {
			return true
		}
		info, err := os.Stat(name)
		return err == nil && !info.IsDir()
	})
	return v
})

// Validate checks c after applying defaults. It returns a *[ConfigError]
// naming every invalid field, or nil. Its messages never contain values.
func (c Config) Validate() error {
	d := c.WithDefaults()
	var fields []FieldError
	if err := validate().Struct(d); err != nil {
		verrs, ok := err.(validator.ValidationErrors)
		if !ok {
			return fmt.Errorf("dbkit: validate config: %w", err)
		}
		for _, fe := range verrs {
			// The namespace names a replica's field too: Replicas[1].Host.
			field := strings.TrimPrefix(fe.Namespace(), "Config.")
			fields = append(fields, FieldError{Field: field, Rule: fe.Tag(), Message: ruleMessage(fe)})
		}
	}
	if d.MaxOpenConns >= 1 && d.MaxIdleConns > d.MaxOpenConns {
		fields = append(fields, FieldError{Field: "MaxIdleConns", Rule: "ltefield", Message: "must not exceed MaxOpenConns"})
	}
	for _, f := range []struct{ name, value string }{
		{"Host", d.Host}, {"Database", d.Database}, {"User", d.User}, {"Password", d.Password},
		{"ApplicationName", d.ApplicationName}, {"SSLRootCert", d.SSLRootCert},
		{"SSLCert", d.SSLCert}, {"SSLKey", d.SSLKey}, {"DirectHost", d.DirectHost},
	} {
		if strings.IndexByte(f.value, 0) >= 0 {
			fields = append(fields, FieldError{Field: f.name, Rule: "nonul", Message: "must not contain a NUL byte"})
		}
	}
	if strings.Contains(d.Host, ",") {
		fields = append(fields, FieldError{Field: "Host", Rule: "single", Message: "must name one server: put the others in Fallbacks"})
	}
	for i, f := range d.Fallbacks {
		if strings.ContainsAny(f.Host, ",\x00") {
			fields = append(fields, FieldError{Field: fmt.Sprintf("Fallbacks[%d].Host", i), Rule: "single", Message: "must name one server, with no comma or NUL byte"})
		}
	}
	// A replica may be the primary's address (or a fallback's): with a
	// cluster whose primary moves, every node is named both ways, and the
	// checks leave the one that is not a standby out of the rotation.
	seen := map[string]bool{}
	for i, r := range d.Replicas {
		if strings.IndexByte(r.Host, 0) >= 0 || strings.IndexByte(r.Name, 0) >= 0 {
			fields = append(fields, FieldError{Field: fmt.Sprintf("Replicas[%d]", i), Rule: "nonul", Message: "must not contain a NUL byte"})
		}
		if seen[r.Addr()] {
			fields = append(fields, FieldError{Field: fmt.Sprintf("Replicas[%d]", i), Rule: "unique",
				Message: "must name a server no other replica names"})
		}
		seen[r.Addr()] = true
	}
	if len(fields) == 0 {
		return nil
	}
	return &ConfigError{Fields: fields}
}

func ruleMessage(fe validator.FieldError) string {
	p := fe.Param()
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min":
		if fe.Kind() == reflect.String {
			return "must be at least " + p + " characters long"
		}
		return "must be at least " + p
	case "max":
		if fe.Kind() == reflect.String {
			return "must be at most " + p + " characters long"
		}
		return "must be at most " + p
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(p, " ", ", ")
	case "file":
		return "must name an existing file"
	case "cafile":
		return `must name an existing file, or be "system" (the system's CAs)`
	case "maxbytes":
		return "must be at most " + p + " bytes long"
	}
	return "fails rule " + fe.Tag()
}

// FieldError describes one invalid field of a [Config].
type FieldError struct {
	Field   string // Go field name, for example "Port"
	Rule    string // the rule it breaks, for example "max"
	Message string // what is wrong, for example "must be at most 65535"
}

// ConfigError reports every invalid field of a [Config]. Get it with
// errors.As. It never contains the values of the fields, so it is safe to log.
type ConfigError struct {
	Fields []FieldError
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("dbkit: invalid config: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Field)
		b.WriteByte(' ')
		b.WriteString(f.Message)
	}
	return b.String()
}

// Has reports whether field is among the invalid fields.
func (e *ConfigError) Has(field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// DSN returns the libpq keyword/value connection string for c, defaults
// applied, every value quoted so that any character is safe, including in
// the password. It contains the password: do not log it.
//
// A QueryExecMode other than pgx's default is written as pgx's
// default_query_exec_mode, which pgx reads and libpq does not know; pgx's
// default is left out, so that such a DSN also suits psql and libpq.
func (c Config) DSN() string {
	d := c.WithDefaults()
	var b strings.Builder
	kv := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString("='")
		for i := 0; i < len(v); i++ {
			if v[i] == '\'' || v[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		b.WriteByte('\'')
	}
	hosts, ports := d.Host, strconv.Itoa(d.Port)
	for _, f := range d.Fallbacks {
		hosts += "," + f.Host
		ports += "," + strconv.Itoa(f.Port)
	}
	kv("host", hosts)
	kv("port", ports)
	kv("dbname", d.Database)
	kv("user", d.User)
	if d.Password != "" {
		kv("password", d.Password)
	}
	kv("sslmode", d.SSLMode)
	if d.SSLRootCert != "" {
		kv("sslrootcert", d.SSLRootCert)
	}
	if d.SSLCert != "" {
		kv("sslcert", d.SSLCert)
	}
	if d.SSLKey != "" {
		kv("sslkey", d.SSLKey)
	}
	if d.ApplicationName != "" {
		kv("application_name", d.ApplicationName)
	}
	kv("connect_timeout", strconv.Itoa(dialTimeoutSeconds(d.ConnectTimeout)))
	// Always written: left out, pgx would take PGTARGETSESSIONATTRS from
	// the environment, and a replica's pool (at) could refuse its standby.
	kv("target_session_attrs", cmp.Or(d.TargetSessionAttrs, "any"))
	if d.QueryExecMode != DefaultQueryExecMode {
		kv("default_query_exec_mode", d.QueryExecMode)
	}
	if opts := d.serverOptions(); opts != "" {
		kv("options", opts)
	}
	return b.String()
}

// serverOptions are the session settings of the server-side limits, as
// libpq's options parameter carries them ("-c statement_timeout=5000").
func (c Config) serverOptions() string {
	var b strings.Builder
	for _, o := range []struct {
		name string
		d    time.Duration
	}{
		{"statement_timeout", c.StatementTimeout},
		{"lock_timeout", c.LockTimeout},
		{"idle_in_transaction_session_timeout", c.IdleInTransactionTimeout},
	} {
		if o.d > 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "-c %s=%d", o.name, o.d.Milliseconds())
		}
	}
	return b.String()
}

// dialTimeoutSeconds rounds up to whole seconds, as libpq's connect_timeout
// takes, with libpq's minimum of 2.
func dialTimeoutSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	return max(s, 2)
}

// at returns the Config of the server at host:port, with every other
// setting of c's (defaults applied) and no replica or direct address of its
// own: a replica's, or the direct connection's.
func (c Config) at(host string, port int) Config {
	d := c.WithDefaults()
	d.Host, d.Port = host, port
	d.Replicas, d.DirectHost, d.DirectPort = nil, "", 0
	d.Fallbacks, d.TargetSessionAttrs = nil, ""
	return d
}

// directConfig is the Config of the direct connection (DirectHost).
func (c Config) directConfig() Config {
	d := c.WithDefaults()
	return d.at(d.DirectHost, d.DirectPort)
}

// Addr returns host:port (defaults applied), the form errors and spans use.
func (c Config) Addr() string {
	d := c.WithDefaults()
	return net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
}

// String returns c as a postgres:// URL with the password replaced by
// "[REDACTED]"; it is safe to print and log.
func (c Config) String() string {
	d := c.WithDefaults()
	u := url.URL{Scheme: "postgres", Path: "/" + d.Database}
	q := url.Values{}
	// Several hosts go in the authority, as libpq lists them, unless one
	// is a Unix socket directory or an IPv6 address, which it cannot hold
	// in a list (Go's URL parser refuses them): then in host= and port=.
	listed := len(d.Fallbacks) > 0 && (strings.ContainsAny(d.Host, "/:") ||
		slices.ContainsFunc(d.Fallbacks, func(e Endpoint) bool { return strings.ContainsAny(e.Host, "/:") }))
	switch {
	case listed:
		hosts, ports := []string{d.Host}, []string{strconv.Itoa(d.Port)}
		for _, f := range d.Fallbacks {
			hosts, ports = append(hosts, f.Host), append(ports, strconv.Itoa(f.Port))
		}
		q.Set("host", strings.Join(hosts, ","))
		q.Set("port", strings.Join(ports, ","))
	case strings.HasPrefix(d.Host, "/"):
		u.Host = ":" + strconv.Itoa(d.Port)
		q.Set("host", d.Host)
	default:
		u.Host = d.Addr()
		for _, f := range d.Fallbacks {
			u.Host += "," + f.Addr()
		}
	}
	q.Set("sslmode", d.SSLMode)
	if d.ApplicationName != "" {
		q.Set("application_name", d.ApplicationName)
	}
	if d.QueryExecMode != DefaultQueryExecMode {
		q.Set("default_query_exec_mode", d.QueryExecMode)
	}
	if d.TargetSessionAttrs != "" {
		q.Set("target_session_attrs", d.TargetSessionAttrs)
	}
	u.RawQuery = q.Encode()
	// url.URL would percent-encode the brackets of the redaction marker.
	userinfo := url.User(d.User).String()
	if d.Password != "" {
		userinfo += ":" + redacted
	}
	return strings.Replace(u.String(), "postgres://", "postgres://"+userinfo+"@", 1)
}

// LogValue implements slog.LogValuer: the connection settings as a group,
// with the password redacted.
func (c Config) LogValue() slog.Value {
	d := c.WithDefaults()
	attrs := []slog.Attr{
		slog.String("host", d.Host),
		slog.Int("port", d.Port),
		slog.String("database", d.Database),
		slog.String("user", d.User),
		slog.String("sslmode", d.SSLMode),
	}
	if d.Password != "" {
		attrs = append(attrs, slog.String("password", redacted))
	}
	if d.ApplicationName != "" {
		attrs = append(attrs, slog.String("application_name", d.ApplicationName))
	}
	attrs = append(attrs,
		slog.Duration("connect_timeout", d.ConnectTimeout),
		slog.Int("max_open_conns", d.MaxOpenConns),
		slog.Int("max_idle_conns", d.MaxIdleConns),
		slog.String("default_query_exec_mode", d.QueryExecMode),
		slog.Duration("dead_peer_timeout", d.DeadPeerTimeout),
	)
	if len(d.Fallbacks) > 0 {
		addrs := make([]string, len(d.Fallbacks))
		for i, f := range d.Fallbacks {
			addrs[i] = f.Addr()
		}
		attrs = append(attrs, slog.Any("fallbacks", addrs))
	}
	if d.TargetSessionAttrs != "" {
		attrs = append(attrs, slog.String("target_session_attrs", d.TargetSessionAttrs))
	}
	if len(d.Replicas) > 0 {
		addrs := make([]string, len(d.Replicas))
		for i, r := range d.Replicas {
			addrs[i] = r.Addr()
		}
		attrs = append(attrs, slog.Any("replicas", addrs))
	}
	if d.DirectHost != "" {
		attrs = append(attrs, slog.String("direct", Endpoint{Host: d.DirectHost, Port: d.DirectPort}.Addr()))
	}
	for _, a := range []struct {
		key string
		d   time.Duration
	}{{"statement_timeout", d.StatementTimeout}, {"lock_timeout", d.LockTimeout}, {"idle_in_transaction_session_timeout", d.IdleInTransactionTimeout}} {
		if a.d > 0 {
			attrs = append(attrs, slog.Duration(a.key, a.d))
		}
	}
	return slog.GroupValue(attrs...)
}

// configFields has Config's fields without its methods, so that printing it
// does not recurse into GoString or MarshalJSON.
type configFields Config

// GoString implements fmt.GoStringer so that %#v redacts the password too.
// It shows the fields set, not those left at their zero value.
func (c Config) GoString() string {
	f := configFields(c)
	if f.Password != "" {
		f.Password = redacted
	}
	v := reflect.ValueOf(f)
	var b strings.Builder
	b.WriteString("dbkit.Config{")
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			continue
		}
		if b.Len() > len("dbkit.Config{") {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s:%#v", v.Type().Field(i).Name, v.Field(i).Interface())
	}
	b.WriteByte('}')
	return b.String()
}

// MarshalJSON writes c with the password redacted, so that a Config dumped
// into a log or a debug endpoint does not leak it.
func (c Config) MarshalJSON() ([]byte, error) {
	f := configFields(c)
	if f.Password != "" {
		f.Password = redacted
	}
	return json.Marshal(f)
}
