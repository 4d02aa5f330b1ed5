package migrate

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// probeRounds is how many times checkPooler looks for a server process
// shared between its connection and another client's transaction before it
// concludes that the pooler keeps a server process per client (session
// pooling).
const probeRounds = 5

// checkPooler refuses, with an error matching [ErrTransactionPooler], to
// run migrations on conn when conn reaches PostgreSQL through a pooler
// that hands server processes out per transaction (PgBouncer in
// transaction or statement mode): the session advisory lock the migrator
// takes would be taken by whichever server process ran that statement, and
// stay there, held for nobody, while the migrator's next statements ran on
// other processes; a second migrator could take it too.
//
// The test is in two steps.
//
//  1. The process ID the server sent at startup (BackendKeyData, kept by
//     pgconn) is compared with what pg_backend_pid() answers. They are the
//     same on a direct connection, and then nothing more is sent. A pooler
//     sends a key of its own (PgBouncer draws a random one), so they
//     differ there.
//  2. Then the pooler's mode is found out, rather than any pooler refused,
//     so that a session pooler (PgBouncer in session mode), where the lock
//     holds, still works. A second client connection (same settings, a
//     connection of its own, outside the pool and its limits) starts a
//     transaction and asks for its server process. A session pooler keeps
//     our server process ours while our client is connected: the other
//     client can never get it, and our own process ID never changes. A
//     transaction pooler gives the process our last statement released to
//     the next transaction (PgBouncer reuses the most recently released
//     server connection first), so the other client lands on it; and when
//     other traffic took it meanwhile, our next statement lands on another
//     process. Either observation proves transaction pooling. Neither seen
//     in probeRounds rounds: session pooling.
//
// A pooler that refuses the probe's transaction (PgBouncer in statement
// mode does) is refused too. Drivers other than pgx's are not checked: their
// startup process ID is not reachable.
//
// Every statement here goes by the simple protocol: an extended-protocol
// exchange split over two server processes fails behind a transaction
// pooler before the check could say why.
func (m *Migrator) checkPooler(ctx context.Context, conn *sql.Conn) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return nil
		}
		pc := c.Conn()
		startup := int64(pc.PgConn().PID())
		pid, err := backendPID(ctx, pc)
		if err != nil {
			return fmt.Errorf("migrate: ask for the server process ID: %w", err)
		}
		if pid == startup {
			return nil // no pooler
		}
		shared, err := sharesServerProcesses(ctx, pc, pid)
		if err != nil {
			return fmt.Errorf("%w (the connection goes through a pooler, and checking its pool mode failed: %w)", ErrTransactionPooler, err)
		}
		if shared {
			return fmt.Errorf("%w (the connection goes through a pooler that gives its server processes to other clients between transactions)", ErrTransactionPooler)
		}
		m.logger.DebugContext(ctx, "the migration connection goes through a session pooler: its advisory lock holds")
		return nil
	})
}

// sharesServerProcesses reports whether c's server process, pid, is given
// to another client between c's transactions (see checkPooler).
func sharesServerProcesses(ctx context.Context, c *pgx.Conn, pid int64) (bool, error) {
	other, err := pgx.ConnectConfig(ctx, c.Config())
	if err != nil {
		return false, fmt.Errorf("open a second connection: %w", err)
	}
	defer func() { _ = other.Close(context.WithoutCancel(ctx)) }()
	for range probeRounds {
		var theirs int64
		err := pgx.BeginFunc(ctx, other, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&theirs)
		})
		if err != nil {
			return false, fmt.Errorf("a transaction on a second connection: %w", err)
		}
		if theirs == pid {
			return true, nil
		}
		again, err := backendPID(ctx, c)
		if err != nil {
			return false, err
		}
		if again != pid {
			return true, nil
		}
	}
	return false, nil
}

// backendPID returns the process ID of the server process that runs c's
// statement.
func backendPID(ctx context.Context, c *pgx.Conn) (int64, error) {
	var pid int64
	err := c.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid)
	return pid, err
}
