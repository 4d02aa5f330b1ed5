package dbkit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm/logger"
)

// DefaultSlowQueryThreshold is the duration past which a statement is
// logged at WARN.
const DefaultSlowQueryThreshold = 200 * time.Millisecond

// gormLogger is GORM's logger.Interface on a slog.Logger, for GORM's own
// messages. It logs no statement: GORM renders some (those of DB.Scan) with
// their values inlined whatever its logger asks, so dbkit logs statements
// from a callback instead (logStatement), where the SQL is still
// parameterised.
type gormLogger struct {
	log   *slog.Logger
	level logger.LogLevel
}

var _ logger.Interface = (*gormLogger)(nil)

func (g *gormLogger) LogMode(level logger.LogLevel) logger.Interface {
	c := *g
	c.level = level
	return &c
}

// GORM's own messages (a model it cannot parse, say) carry no query values.
func (g *gormLogger) Info(ctx context.Context, msg string, args ...any) {
	g.logf(ctx, logger.Info, slog.LevelInfo, msg, args)
}

func (g *gormLogger) Warn(ctx context.Context, msg string, args ...any) {
	g.logf(ctx, logger.Warn, slog.LevelWarn, msg, args)
}

func (g *gormLogger) Error(ctx context.Context, msg string, args ...any) {
	g.logf(ctx, logger.Error, slog.LevelError, msg, args)
}

func (g *gormLogger) logf(ctx context.Context, at logger.LogLevel, level slog.Level, msg string, args []any) {
	if g.level >= at {
		g.log.LogAttrs(ctx, level, "gorm: "+fmt.Sprintf(msg, args...), spanAttrs(ctx)...)
	}
}

// Trace logs nothing: see logStatement.
func (g *gormLogger) Trace(context.Context, time.Time, func() (string, int64), error) {}

// logStatement logs one statement, parameterised and with its literals
// replaced (text, "" when WithoutQueryText), err being its failure (nil for
// success and not-found): at ERROR when it failed
// (not-found is no failure), at WARN when slow, else at DEBUG, with the
// trace and span IDs of ctx (the statement's span, when traced). It runs
// after the error was translated, so the error carries no value either.
func (db *DB) logStatement(ctx context.Context, text string, rows int64, elapsed time.Duration, err error) {
	level, msg := slog.LevelDebug, "dbkit: statement"
	switch {
	case err != nil:
		level, msg = slog.LevelError, "dbkit: statement failed"
	case elapsed >= db.slowQuery:
		level, msg = slog.LevelWarn, "dbkit: slow statement"
	}
	if !db.stmtLog.Enabled(ctx, level) {
		return
	}
	attrs := spanAttrs(ctx)
	if text != "" {
		attrs = append(attrs, slog.String("sql", text))
	}
	attrs = append(attrs, slog.Int64("rows", rows), slog.Duration("duration", elapsed))
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	db.stmtLog.LogAttrs(ctx, level, msg, attrs...)
}

// spanAttrs are the trace_id and span_id of ctx's span, if any.
func spanAttrs(ctx context.Context) []slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())}
}
