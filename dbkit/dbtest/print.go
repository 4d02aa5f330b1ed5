package dbtest

import (
	"fmt"
	"log/slog"

	"github.com/dbkit-go/database/internal/redact"
)

// A Server prints as a short description: whatever the verb, fmt, log and
// slog never walk its fields, which hold the superuser's password and the
// admin pool.
var (
	_ fmt.Formatter  = (*Server)(nil)
	_ slog.LogValuer = (*Server)(nil)
)

// String describes s by where it runs and its superuser, as
// "dbtest.Server{local 127.0.0.1:5432 user=postgres}": never the password.
func (s *Server) String() string {
	if s == nil {
		return "dbtest.Server(nil)"
	}
	return fmt.Sprintf("dbtest.Server{%s %s user=%s}", s.source, s.admin.Addr(), s.admin.User)
}

// GoString is String: %#v prints the description, not the fields.
func (s *Server) GoString() string { return s.String() }

// Format implements fmt.Formatter: every verb prints the description.
func (s *Server) Format(f fmt.State, verb rune) { redact.Format(f, verb, s) }

// LogValue implements slog.LogValuer: source, address and superuser.
func (s *Server) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue(s.String())
	}
	return slog.GroupValue(
		slog.String("type", "dbtest.Server"),
		slog.String("source", string(s.source)),
		slog.String("addr", s.admin.Addr()),
		slog.String("user", s.admin.User),
	)
}
