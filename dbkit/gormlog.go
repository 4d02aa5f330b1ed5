package dbkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DefaultSlowQueryThreshold is the duration past which a statement is
// logged at WARN.
const DefaultSlowQueryThreshold = 200 * time.Millisecond

// gormLogger is GORM's logger.Interface on a slog.Logger. Statements are
// logged with their placeholders only: it implements GORM's ParamsFilter,
// which drops the values before GORM renders the SQL.
type gormLogger struct {
	log   *slog.Logger
	slow  time.Duration
	level logger.LogLevel
}

var (
	_ logger.Interface  = (*gormLogger)(nil)
	_ gorm.ParamsFilter = (*gormLogger)(nil)
)

func newGormLogger(l *slog.Logger, slow time.Duration) *gormLogger {
	if slow <= 0 {
		slow = DefaultSlowQueryThreshold
	}
	return &gormLogger{log: l, slow: slow, level: logger.Info}
}

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

// ParamsFilter keeps the statement and drops its values.
func (g *gormLogger) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

// Trace logs one statement: at ERROR when it failed (not-found is no
// failure), at WARN when slow, else at DEBUG.
func (g *gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if g.level <= logger.Silent {
		return
	}
	elapsed := time.Since(begin)
	level, msg := slog.LevelDebug, "statement"
	switch {
	case err != nil && !errors.Is(err, gorm.ErrRecordNotFound) && g.level >= logger.Error:
		level, msg = slog.LevelError, "statement failed"
	case elapsed >= g.slow && g.level >= logger.Warn:
		level, msg = slog.LevelWarn, "slow statement"
	}
	if !g.log.Enabled(ctx, level) {
		return
	}
	sql, rows := fc()
	sql = placeholder.ReplaceAllString(sql, "$$$1") // GORM renders an unfilled $1 as $1$
	attrs := append(spanAttrs(ctx),
		slog.String("sql", sql),
		slog.Int64("rows", rows),
		slog.Duration("duration", elapsed))
	if level == slog.LevelError {
		attrs = append(attrs, slog.String("error", err.Error())) // translated: no value in it
	}
	g.log.LogAttrs(ctx, level, "dbkit: "+msg, attrs...)
}

// placeholder matches a PostgreSQL placeholder as GORM renders it when
// the values are withheld.
var placeholder = regexp.MustCompile(`\$(\d+)\$`)

// spanAttrs are the trace_id and span_id of ctx's span, if any.
func spanAttrs(ctx context.Context) []slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())}
}
