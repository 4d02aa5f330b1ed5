package dbkit

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// ConfigFromEnv builds a Config from the environment and validates it.
//
// When DATABASE_URL is set it is parsed with [ParseURL] and nothing else is
// read. Otherwise libpq's variables are used: PGHOST (default "localhost"),
// PGPORT, PGDATABASE (default: the user name), PGUSER (default: the OS user),
// PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGAPPNAME and
// PGCONNECT_TIMEOUT (seconds). pgx has no variable for its query exec mode,
// and neither has dbkit: set it in DATABASE_URL
// (default_query_exec_mode=exec) or in the returned Config.
//
// Every problem found is reported in one *[ConfigError]; none of them
// contains the password.
func ConfigFromEnv() (Config, error) {
	return configFromEnv(os.Getenv)
}

func configFromEnv(getenv func(string) string) (Config, error) {
	if raw := getenv("DATABASE_URL"); raw != "" {
		c, err := ParseURL(raw)
		if err != nil {
			return Config{}, err
		}
		return topologyFromEnv(c, getenv)
	}
	var p parseErrors
	c := Config{
		Host:            getenv("PGHOST"),
		Database:        getenv("PGDATABASE"),
		User:            getenv("PGUSER"),
		Password:        getenv("PGPASSWORD"),
		SSLMode:         getenv("PGSSLMODE"),
		SSLRootCert:     getenv("PGSSLROOTCERT"),
		SSLCert:         getenv("PGSSLCERT"),
		SSLKey:          getenv("PGSSLKEY"),
		ApplicationName: getenv("PGAPPNAME"),
	}
	if v := getenv("PGPORT"); v != "" {
		c.Port = p.int("Port", "PGPORT", v)
	}
	if v := getenv("PGCONNECT_TIMEOUT"); v != "" {
		c.ConnectTimeout = p.seconds("ConnectTimeout", "PGCONNECT_TIMEOUT", v)
	}
	if c.Host == "" {
		c.Host = "localhost"
	}
	if c.User == "" {
		if u, err := user.Current(); err == nil {
			c.User = u.Username
		}
	}
	if c.Database == "" {
		c.Database = c.User
	}
	if err := p.finish(c); err != nil {
		return Config{}, err
	}
	return topologyFromEnv(c, getenv)
}

// topologyFromEnv adds to c the servers other than the primary the
// environment names: DATABASE_REPLICAS, a comma-separated list of the read
// replicas' host:port (libpq's multi-host syntax, "db-r1:5432,db-r2:5432"),
// and DATABASE_DIRECT_URL, the server itself behind a transaction pooler,
// of which only the host and port are used (its user and database, when
// given, must be c's).
func topologyFromEnv(c Config, getenv func(string) string) (Config, error) {
	if getenv("DATABASE_REPLICAS") == "" && getenv("DATABASE_DIRECT_URL") == "" {
		return c, nil // validated already
	}
	var p parseErrors
	if v := getenv("DATABASE_REPLICAS"); v != "" {
		for i, hp := range strings.Split(v, ",") {
			host, port, ok := splitHostPort(strings.TrimSpace(hp))
			if !ok {
				p.add(fmt.Sprintf("Replicas[%d]", i), "parse", "(DATABASE_REPLICAS) must be host:port or host")
				continue
			}
			c.Replicas = append(c.Replicas, Replica{Host: host, Port: port})
		}
	}
	if raw := getenv("DATABASE_DIRECT_URL"); raw != "" {
		d, err := ParseURL(raw)
		if err != nil {
			p.add("DirectHost", "parse", "(DATABASE_DIRECT_URL) is not a valid URL: "+err.Error())
		} else if d.User != c.User || d.Database != c.Database {
			p.add("DirectHost", "parse", "(DATABASE_DIRECT_URL) must name the same user and database as the main connection")
		} else {
			c.DirectHost, c.DirectPort = d.Host, d.Port
		}
	}
	if err := p.finish(c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// splitHostPort reads "host:port", "[v6]:port" or a bare host (port 0).
func splitHostPort(s string) (string, int, bool) {
	if s == "" {
		return "", 0, false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") && !strings.HasPrefix(s, "[") && strings.Count(s, ":") == 1 {
			return "", 0, false // "host:" or a bad port
		}
		return strings.Trim(s, "[]"), 0, true
	}
	n, err := strconv.Atoi(port)
	if err != nil || host == "" {
		return "", 0, false
	}
	return host, n, true
}

// ParseURL parses a postgres:// or postgresql:// URL such as
// "postgres://app:s3cr3t@db.internal:5432/app?sslmode=require".
//
// Userinfo and path are percent-decoded, so a password containing reserved
// characters must be percent-encoded in the URL. Recognised query
// parameters: dbname, user, password, host and port (a Unix socket
// directory in host is allowed),
// sslmode, sslrootcert, sslcert, sslkey, application_name, connect_timeout
// (seconds), pgx's default_query_exec_mode ([Config.QueryExecMode]), and
// pgxpool's pool_max_conns, pool_max_idle_conns, pool_max_conn_lifetime and
// pool_max_conn_idle_time (Go durations such as "30m"). An unknown
// parameter is an error rather than silently dropped; the error says how
// many there are but not their names, since a password with an unencoded
// '&' (password=a&b) makes its tail a parameter name.
//
// The result is validated; errors never contain the password.
func ParseURL(raw string) (Config, error) {
	raw, hostList := firstHostOnly(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, &ConfigError{Fields: []FieldError{{Field: "URL", Rule: "url", Message: urlProblem(raw)}}}
	}
	var p parseErrors
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		p.add("URL", "scheme", "must start with postgres:// or postgresql://")
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The parse error would quote the offending part, which may be a password.
		p.add("URL", "query", "has a malformed query string: a bad percent-escape or a ';' separator")
	}
	// A password with an unescaped '/', '?' or '#' can parse "successfully"
	// into a wrong host, path, query key or fragment, carrying the rest of
	// the password with it. An '@' is fine in a query value only
	// (application_name=api@eu).
	if u.Fragment != "" || strings.Contains(u.Opaque, "@") ||
		(u.User == nil && (strings.Contains(u.Host, "@") || strings.Contains(u.Path, "@") || anyKeyContains(query, "@"))) {
		return Config{}, &ConfigError{Fields: []FieldError{{Field: "URL", Rule: "url", Message: malformedUserinfo}}}
	}
	var c Config
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	// "host1:port1,host2:port2": libpq's multi-host list; the first is
	// Host and Port, the others Fallbacks.
	if hostList == "" {
		hostList = u.Host
	}
	for i, hp := range strings.Split(hostList, ",") {
		host, port := hp, 0
		if h, ps, err := net.SplitHostPort(hp); err == nil {
			host = h
			if ps != "" {
				port = p.int("Port", "URL port", ps)
			}
		}
		host = strings.Trim(host, "[]")
		if i == 0 {
			c.Host, c.Port = host, port
		} else {
			c.Fallbacks = append(c.Fallbacks, Endpoint{Host: host, Port: port})
		}
	}
	c.Database = strings.TrimPrefix(u.Path, "/")

	unknown := 0
	var ports []string // the port parameter's list, applied once the hosts are known
	for key, values := range query {
		v := values[len(values)-1]
		switch key {
		case "host":
			hosts := strings.Split(v, ",")
			c.Host, c.Fallbacks = hosts[0], nil
			for _, h := range hosts[1:] {
				c.Fallbacks = append(c.Fallbacks, Endpoint{Host: h})
			}
		case "port":
			ports = strings.Split(v, ",")
		case "target_session_attrs":
			c.TargetSessionAttrs = v
		case "dbname":
			c.Database = v
		case "user":
			c.User = v
		case "password":
			c.Password = v
		case "sslmode":
			c.SSLMode = v
		case "sslrootcert":
			c.SSLRootCert = v
		case "sslcert":
			c.SSLCert = v
		case "sslkey":
			c.SSLKey = v
		case "application_name":
			c.ApplicationName = v
		case "default_query_exec_mode":
			c.QueryExecMode = v
		case "connect_timeout":
			c.ConnectTimeout = p.seconds("ConnectTimeout", "connect_timeout", v)
		case "pool_max_conns":
			c.MaxOpenConns = p.int("MaxOpenConns", "pool_max_conns", v)
		case "pool_max_idle_conns":
			c.MaxIdleConns = p.int("MaxIdleConns", "pool_max_idle_conns", v)
		case "pool_max_conn_lifetime":
			c.ConnMaxLifetime = p.duration("ConnMaxLifetime", "pool_max_conn_lifetime", v)
		case "pool_max_conn_idle_time":
			c.ConnMaxIdleTime = p.duration("ConnMaxIdleTime", "pool_max_conn_idle_time", v)
		default:
			unknown++
		}
	}
	if unknown > 0 {
		p.add("URL", "param", unknownParams(unknown))
	}
	// libpq: one port for every host, or one per host.
	switch {
	case len(ports) == 1:
		c.Port = p.int("Port", "port", ports[0])
		for i := range c.Fallbacks {
			c.Fallbacks[i].Port = c.Port
		}
	case len(ports) == len(c.Fallbacks)+1:
		c.Port = p.int("Port", "port", ports[0])
		for i := range c.Fallbacks {
			c.Fallbacks[i].Port = p.int("Port", "port", ports[i+1])
		}
	case len(ports) > 1:
		p.add("Port", "parse", "(port) must give one port, or one per host")
	}
	if err := p.finish(c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// firstHostOnly returns raw with a multi-host authority
// ("db1:5432,db2:5433", which net/url refuses) cut to its first host, and
// the whole list ("" when raw names one host at most).
func firstHostOnly(raw string) (string, string) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw, ""
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@") + 1
	hosts := rest[at:end]
	comma := strings.Index(hosts, ",")
	if comma < 0 {
		return raw, ""
	}
	return raw[:i+3] + rest[:at] + hosts[:comma] + rest[end:], hosts
}

// unknownParams says how many parameters ParseURL does not know, without
// naming them: a password with an unencoded '&' (password=a&b) makes its
// tail a parameter name of its own.
func unknownParams(n int) string {
	s := "s"
	if n == 1 {
		s = ""
	}
	return "has " + strconv.Itoa(n) + " unknown parameter" + s +
		" (not named: it may be part of a password; percent-encode '&' and '=' in values)"
}

func anyKeyContains(q url.Values, sub string) bool {
	for k := range q {
		if strings.Contains(k, sub) {
			return true
		}
	}
	return false
}

// urlProblem explains why raw failed to parse without repeating raw, which
// may hold a password. Everything up to the last '@' may be userinfo (an
// unescaped '/', '?' or '#' in a password ends the authority early), so it
// is dropped before parsing again to tell a malformed password from a
// malformed host, port or path.
func urlProblem(raw string) string {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, err := url.Parse("postgres://" + rest[at+1:]); err == nil {
			return malformedUserinfo
		}
		rest = rest[at+1:]
	}
	_, err := url.Parse("postgres://" + rest)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return "is malformed: " + uerr.Err.Error()
	}
	return "is malformed"
}

const malformedUserinfo = "has a malformed user or password: percent-encode reserved characters (@ : / ? # % and spaces) in them"

// parseErrors collects problems found while reading settings so that the
// caller hears of all of them at once, together with validation problems.
type parseErrors struct{ fields []FieldError }

func (p *parseErrors) add(field, rule, msg string) {
	p.fields = append(p.fields, FieldError{Field: field, Rule: rule, Message: msg})
}

func (p *parseErrors) int(field, source, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		p.add(field, "parse", "("+source+") must be an integer")
	}
	return n
}

func (p *parseErrors) seconds(field, source, v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.add(field, "parse", "("+source+") must be a whole number of seconds")
		return 0
	}
	return time.Duration(n) * time.Second
}

func (p *parseErrors) duration(field, source, v string) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil {
		p.add(field, "parse", "("+source+") must be a duration such as 30m")
	}
	return d
}

// finish validates c and merges the validation problems with the parse
// problems, leaving out fields already reported as unparsable.
func (p *parseErrors) finish(c Config) error {
	err := c.Validate()
	var cerr *ConfigError
	if errors.As(err, &cerr) {
		for _, f := range cerr.Fields {
			if !p.has(f.Field) {
				p.fields = append(p.fields, f)
			}
		}
	} else if err != nil {
		return err
	}
	if len(p.fields) == 0 {
		return nil
	}
	return &ConfigError{Fields: p.fields}
}

func (p *parseErrors) has(field string) bool {
	for _, f := range p.fields {
		if f.Field == field {
			return true
		}
	}
	return false
}
