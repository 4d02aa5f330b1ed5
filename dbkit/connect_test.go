package dbkit

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// When pgx refuses the settings, its error quotes the connection string
// with a redaction that stops at the first escaped quote of the password.
// Connect must not pass that text on.
func TestConnectSettingsErrorHidesPassword(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Host: "127.0.0.1", Database: "app", User: "app",
		Password: `it's my secret pass`, SSLMode: "verify-full", SSLRootCert: notPEM,
	}
	_, err := Connect(context.Background(), cfg)
	if err == nil {
		t.Fatal("Connect succeeded with an unreadable CA file")
	}
	for _, leak := range []string{"secret", "my ", "pass'"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q contains %q of the password", err, leak)
		}
	}
	if !strings.Contains(err.Error(), "127.0.0.1:5432") {
		t.Errorf("error %q does not name the server", err)
	}
}

func TestRetryableConnectError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"dns", &net.DNSError{Err: "no such host", Name: "db"}, true},
		{"server starting", &pgconn.PgError{Code: "57P03"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"wrong password", &pgconn.PgError{Code: "28P01"}, false},
		{"missing database", &pgconn.PgError{Code: "3D000"}, false},
		{"TLS refused", errors.New("server refused TLS connection"), false},
		{"x509", errors.New("x509: certificate signed by unknown authority"), false},
	}
	for _, c := range cases {
		if got := retryableConnectError(c.err); got != c.want {
			t.Errorf("%s: retryable = %v, want %v", c.name, got, c.want)
		}
	}
}

// A TLS refusal is final: Connect does not spend ConnectTimeout retrying it.
func TestConnectDoesNotRetryTLSRefusal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // a server that says "no TLS here" to every SSLRequest
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 8)
			if _, err := c.Read(buf); err == nil {
				c.Write([]byte{'N'})
			}
			c.Close()
		}
	}()
	addr := l.Addr().(*net.TCPAddr)
	start := time.Now()
	_, err = Connect(context.Background(), Config{
		Host: "127.0.0.1", Port: addr.Port, Database: "app", User: "app", SSLMode: "require",
		ConnectTimeout: 10 * time.Second,
	})
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Attempts != 1 {
		t.Fatalf("err = %v, want a ConnectError after one attempt", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v: the refusal was retried", took)
	}
}
