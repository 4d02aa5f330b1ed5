package dbkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dbkit-go/database/migrate"
)

// MigrateMain is the whole main of a service's migration command: migrations
// are Go code, so the command is compiled into the service's own binary.
//
//	// cmd/migrate/main.go
//	func main() { os.Exit(dbkit.MigrateMain(migrations.All)) }
//
// opts are the options the service gives WithMigrateOptions (a table name,
// say), so that the command and the service agree; flags on the command
// line override them.
//
// It reads the command line (see [migrate.Usage]: up, down [N], to ID,
// status, plan) and the connection from the environment ([ConfigFromEnv]:
// DATABASE_DIRECT_URL, when set, is the one it uses),
// runs the command, and returns the exit status: 0 on success, 1 on failure,
// 2 on a bad command line. Ctrl-C or SIGTERM cancels it cleanly: the running
// migration's transaction is rolled back and the lock released.
func MigrateMain(migrations []Migration, opts ...migrate.Option) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return RunMigrateCommand(ctx, os.Args[1:], os.Stdout, os.Stderr, migrations, opts...)
}

// RunMigrateCommand is MigrateMain with its inputs and outputs given: the
// command line args (without the program name), where the report goes, and
// where errors and progress logs go.
func RunMigrateCommand(ctx context.Context, args []string, stdout, stderr io.Writer, migrations []Migration, opts ...migrate.Option) int {
	cmd, err := migrate.ParseCommand(args)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n\n%s", err, migrate.Usage)
		return 2
	}
	if cmd.Name == "help" {
		fmt.Fprint(stdout, migrate.Usage)
		return 0
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.DirectHost != "" {
		// DATABASE_DIRECT_URL: Host and Port name a transaction pooler,
		// through which the migration lock does not hold.
		cfg = cfg.directConfig()
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	db, err := Connect(ctx, cfg, WithLogger(logger))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer func() {
		if err := db.Close(context.Background()); err != nil {
			fmt.Fprintln(stderr, err)
		}
	}()
	err = cmd.Run(ctx, db.gorm, migrations, stdout, append([]migrate.Option{migrate.WithLogger(logger)}, opts...)...)
	var usage *migrate.UsageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%v\n\n%s", err, migrate.Usage)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
