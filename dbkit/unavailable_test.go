package dbkit

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestUnavailableClassification: what is transient, and what must never be
// taken for it (a retry would meet the same failure, or could write twice).
func TestUnavailableClassification(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code} }
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		err       error
		transient bool
	}{
		{"admin shutdown 57P01", nil, pg("57P01"), true},
		{"cannot connect now 57P03", nil, pg("57P03"), true},
		{"too many connections 53300", nil, pg("53300"), true},
		{"connection failure 08006", nil, pg("08006"), true},
		{"refused", nil, refused, true},
		{"reset", nil, fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"EOF", nil, io.ErrUnexpectedEOF, true},
		{"pgx closed the connection", nil, pgconn.ErrConnClosed, true},
		{"authentication 28P01", nil, pg("28P01"), false},
		{"missing database 3D000", nil, pg("3D000"), false},
		{"protocol violation 08P01 (a pooler refusing a parameter)", nil, pg("08P01"), false},
		{"statement timeout 57014", nil, pg("57014"), false},
		{"TLS verification", nil, &pgconn.ConnectError{Config: &pgconn.Config{}}, false},
		{"TLS inside", nil, fmt.Errorf("x509: %w", x509.UnknownAuthorityError{}), false},
		{"the caller's ctx ended", ended, refused, false},
		{"after Close", nil, fmt.Errorf("%w: %w", ErrClosed, refused), false},
		{"COMMIT without answer", nil, fmt.Errorf("%w: %w", ErrCommitUnknown, io.ErrUnexpectedEOF), false},
		{"not an error of the server", nil, errors.New("boom"), false},
	} {
		got := errors.Is(markUnavailable(tc.ctx, tc.err), ErrUnavailable)
		if got != tc.transient {
			t.Errorf("%s: ErrUnavailable = %v, want %v", tc.name, got, tc.transient)
		}
	}
	// InTx retries only what dbkit marked; fn's own EOF is no reason.
	if retryableTx(fmt.Errorf("decode the body: %w", io.ErrUnexpectedEOF)) {
		t.Error("retryableTx(fn's own EOF) = true, want false")
	}
	if !retryableTx(markUnavailable(nil, pg("57P01"))) {
		t.Error("retryableTx(57P01, marked) = false, want true")
	}
	if retryableTx(fmt.Errorf("%w: %w", ErrCommitUnknown, markUnavailable(nil, pg("57P01")))) {
		t.Error("retryableTx(COMMIT without answer) = true, want false")
	}
}
