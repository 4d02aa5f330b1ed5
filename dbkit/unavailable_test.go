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
	live := context.Background()
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		err       error
		transient bool
	}{
		{"admin shutdown 57P01", live, pg("57P01"), true},
		{"cannot connect now 57P03", live, pg("57P03"), true},
		{"too many connections 53300", live, pg("53300"), true},
		{"connection failure 08006", live, pg("08006"), true},
		{"refused", live, refused, true},
		{"reset", live, fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"EOF", live, io.ErrUnexpectedEOF, true},
		{"pgx closed the connection", live, pgconn.ErrConnClosed, true},
		{"authentication 28P01", live, pg("28P01"), false},
		{"missing database 3D000", live, pg("3D000"), false},
		{"protocol violation 08P01 (a pooler refusing a parameter)", live, pg("08P01"), false},
		{"statement timeout 57014", live, pg("57014"), false},
		{"TLS inside", live, fmt.Errorf("x509: %w", x509.UnknownAuthorityError{}), false},
		{"the caller's ctx ended", ended, refused, false},
		{"after Close", live, fmt.Errorf("%w: %w", ErrClosed, refused), false},
		{"COMMIT without answer", live, fmt.Errorf("%w: %w", ErrCommitUnknown, io.ErrUnexpectedEOF), false},
		{"not an error of the server", live, errors.New("boom"), false},
	} {
		got := errors.Is(markUnavailable(tc.ctx, tc.err), ErrUnavailable)
		if got != tc.transient {
			t.Errorf("%s: ErrUnavailable = %v, want %v", tc.name, got, tc.transient)
		}
	}
	// An error that never touched the database is not marked by translating
	// it: TranslateError, and InTx's translation of fn's error, leave it be.
	if err := TranslateError(live, fmt.Errorf("decode the body: %w", io.ErrUnexpectedEOF)); errors.Is(err, ErrUnavailable) {
		t.Errorf("TranslateError(a body's EOF) = %v, want it not ErrUnavailable", err)
	}
	// transientCode is Connect's rule too.
	if retryableConnectError(pg("08P01")) || !retryableConnectError(pg("57P03")) {
		t.Error("Connect retries 08P01, or not 57P03")
	}
	// InTx retries only what dbkit marked; fn's own EOF is no reason.
	if retryableTx(fmt.Errorf("decode the body: %w", io.ErrUnexpectedEOF)) {
		t.Error("retryableTx(fn's own EOF) = true, want false")
	}
	if !retryableTx(markUnavailable(context.Background(), pg("57P01"))) {
		t.Error("retryableTx(57P01, marked) = false, want true")
	}
	if retryableTx(fmt.Errorf("%w: %w", ErrCommitUnknown, markUnavailable(context.Background(), pg("57P01")))) {
		t.Error("retryableTx(COMMIT without answer) = true, want false")
	}
}

// A write refused by a demoted primary (25006) is ErrUnavailable, but not
// once Close or the caller's ctx has ended the work: the same exclusions
// as every other unavailable error.
func TestDemotedRefusalExclusions(t *testing.T) {
	refusal := func(db *DB) error {
		pgErr := &pgconn.PgError{Severity: "ERROR", Code: "25006"}
		db.failover.demotions.Store(pgErr, struct{}{})
		return pgErr
	}
	newDB := func() *DB {
		db := &DB{}
		db.failover = &failover{db: db}
		return db
	}
	live := context.Background()
	db := newDB()
	if err := db.fromDriver(live, refusal(db)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a demoted primary's refusal = %v, want ErrUnavailable", err)
	}
	db.ended.Store(true)
	if err := db.fromDriver(live, refusal(db)); !errors.Is(err, ErrClosed) || errors.Is(err, ErrUnavailable) {
		t.Errorf("after Close: %v, want ErrClosed and not ErrUnavailable", err)
	}
	ended, cancel := context.WithCancel(live)
	cancel()
	db = newDB()
	if err := db.fromDriver(ended, refusal(db)); errors.Is(err, ErrUnavailable) {
		t.Errorf("with the caller's ctx ended: %v, want no ErrUnavailable", err)
	}
}
