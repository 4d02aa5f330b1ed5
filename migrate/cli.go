package migrate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gorm.io/gorm"
)

// Usage is the help text of the command line [ParseCommand] reads.
const Usage = `usage: migrate [flags] command

commands:
  up          apply every pending migration
  down [N]    roll back the last N applied migrations (default 1)
  to ID       apply or roll back migrations until ID is the last applied
  status      list every migration: applied (with when, and whether changed since), pending, unknown
  plan        list the migrations up would apply, without applying them

flags:
  -lock-timeout duration   how long to wait for another migrator (default 1m)
  -allow-out-of-order      apply pending migrations that sort before applied ones
  -reject-unknown          refuse to run when the database has migrations this binary does not
  -table name              the table recording applied migrations (default dbkit_migrations)
`

// UsageError reports a command line [ParseCommand] cannot read; print it
// with [Usage] and exit with status 2.
type UsageError struct{ Problem string }

func (e *UsageError) Error() string { return "migrate: " + e.Problem }

// Command is a parsed migrate command line.
type Command struct {
	Name string // up, down, to, status, plan or help
	N    int    // for down
	ID   string // for to

	opts []Option // from the flags the command line set
}

// ParseCommand reads a command line such as ["-lock-timeout", "5m", "down",
// "2"]. "help", "-h" and "--help" give Command{Name: "help"}.
func ParseCommand(args []string) (Command, error) {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lockTimeout := fs.Duration("lock-timeout", DefaultLockTimeout, "")
	outOfOrder := fs.Bool("allow-out-of-order", false, "")
	rejectUnknown := fs.Bool("reject-unknown", false, "")
	table := fs.String("table", DefaultTableName, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Command{Name: "help"}, nil
		}
		return Command{}, &UsageError{Problem: err.Error()}
	}
	// Only the flags given override the options of the code that runs the
	// command: a service's WithTableName stays in force without -table.
	var c Command
	var problem string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "lock-timeout":
			if *lockTimeout <= 0 {
				problem = "-lock-timeout must be positive"
			}
			c.opts = append(c.opts, WithLockTimeout(*lockTimeout))
		case "table":
			c.opts = append(c.opts, WithTableName(*table))
		case "allow-out-of-order":
			if *outOfOrder {
				c.opts = append(c.opts, AllowOutOfOrder())
			}
		case "reject-unknown":
			if *rejectUnknown {
				c.opts = append(c.opts, RejectUnknown())
			}
		}
	})
	if problem != "" {
		return Command{}, &UsageError{Problem: problem}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return Command{}, &UsageError{Problem: "no command given"}
	}
	c.Name, rest = rest[0], rest[1:]
	switch c.Name {
	case "help":
	case "up", "status", "plan":
		if len(rest) > 0 {
			return Command{}, &UsageError{Problem: fmt.Sprintf("%s takes no arguments, got %q", c.Name, rest)}
		}
	case "down":
		c.N = 1
		if len(rest) > 1 {
			return Command{}, &UsageError{Problem: fmt.Sprintf("down takes at most one argument, got %q", rest)}
		}
		if len(rest) == 1 {
			n, err := strconv.Atoi(rest[0])
			if err != nil || n < 1 {
				return Command{}, &UsageError{Problem: fmt.Sprintf("down N: N must be a positive integer, got %q", rest[0])}
			}
			c.N = n
		}
	case "to":
		if len(rest) != 1 {
			return Command{}, &UsageError{Problem: "to takes one migration ID"}
		}
		c.ID = rest[0]
	default:
		return Command{}, &UsageError{Problem: fmt.Sprintf("unknown command %q", c.Name)}
	}
	return c, nil
}

// Run runs the command on db with migrations and writes its report to out.
// opts are the service's options; flags given on the command line override
// them.
func (c Command) Run(ctx context.Context, db *gorm.DB, migrations []Migration, out io.Writer, opts ...Option) error {
	if c.Name == "help" {
		_, err := io.WriteString(out, Usage)
		return err
	}
	m, err := New(db, migrations, append(slices.Clone(opts), c.opts...)...)
	if err != nil {
		return err
	}
	switch c.Name {
	case "up":
		applied, err := m.Up(ctx)
		report(out, "applied", applied, err)
		return err
	case "down":
		rolledBack, err := m.Down(ctx, c.N)
		report(out, "rolled back", rolledBack, err)
		return err
	case "to":
		applied, rolledBack, err := m.To(ctx, c.ID)
		if len(applied) > 0 || len(rolledBack) == 0 {
			report(out, "applied", applied, err)
		}
		if len(rolledBack) > 0 {
			report(out, "rolled back", rolledBack, err)
		}
		return err
	case "plan":
		pending, err := m.Plan(ctx)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			fmt.Fprintln(out, "nothing to apply: the database is up to date")
			return nil
		}
		fmt.Fprintf(out, "up would apply %d migration(s), in this order:\n", len(pending))
		for _, id := range pending {
			fmt.Fprintf(out, "  %s\n", id)
		}
		return nil
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		return WriteStatus(out, st)
	}
	return &UsageError{Problem: fmt.Sprintf("unknown command %q", c.Name)}
}

// report lists what a command did; after a failure, only what it did do.
func report(out io.Writer, verb string, ids []string, err error) {
	if len(ids) == 0 {
		if err == nil {
			fmt.Fprintf(out, "%s nothing\n", verb)
		}
		return
	}
	for _, id := range ids {
		fmt.Fprintf(out, "%s %s\n", verb, id)
	}
}

// WriteStatus writes st as a table, with a summary line. An applied
// migration whose code changed since (ChecksumMismatch) shows as "applied,
// changed", and the summary counts them when there are any.
func WriteStatus(out io.Writer, st []MigrationStatus) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tAPPLIED AT")
	counts := map[State]int{}
	changed := 0
	for _, s := range st {
		counts[s.State]++
		at := ""
		if !s.AppliedAt.IsZero() {
			at = s.AppliedAt.UTC().Format(time.DateTime + " MST")
		}
		state := string(s.State)
		if s.State == Unknown {
			state += " (not in this binary)"
		}
		if s.ChecksumMismatch {
			state += ", changed"
			changed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID, state, strings.TrimSpace(at))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	summary := fmt.Sprintf("%d applied, %d pending, %d unknown", counts[Applied], counts[Pending], counts[Unknown])
	if changed > 0 {
		summary += fmt.Sprintf(", %d changed since applied", changed)
	}
	_, err := fmt.Fprintln(out, summary)
	return err
}
