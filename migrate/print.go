package migrate

import (
	"fmt"
	"log/slog"
	"strconv"

	"github.com/dbkit-go/database/internal/redact"
)

// A Migrator prints as a short description: whatever the verb, fmt, log
// and slog never walk its fields, which hold the *gorm.DB and through it
// the connection pool.
var (
	_ fmt.Formatter  = (*Migrator)(nil)
	_ slog.LogValuer = (*Migrator)(nil)
)

// String describes m by its table and number of migrations, as
// "migrate.Migrator{table=dbkit_migrations migrations=12}".
func (m *Migrator) String() string {
	if m == nil {
		return "migrate.Migrator(nil)"
	}
	return "migrate.Migrator{table=" + m.table + " migrations=" + strconv.Itoa(len(m.migrations)) + "}"
}

// GoString is String: %#v prints the description, not the fields.
func (m *Migrator) GoString() string { return m.String() }

// Format implements fmt.Formatter: every verb prints the description.
func (m *Migrator) Format(f fmt.State, verb rune) { redact.Format(f, verb, m) }

// LogValue implements slog.LogValuer: the table and number of migrations.
func (m *Migrator) LogValue() slog.Value {
	if m == nil {
		return slog.StringValue(m.String())
	}
	return slog.GroupValue(
		slog.String("type", "migrate.Migrator"),
		slog.String("table", m.table),
		slog.Int("migrations", len(m.migrations)),
	)
}
