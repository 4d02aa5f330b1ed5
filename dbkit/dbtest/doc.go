// Package dbtest gives tests a real, throwaway PostgreSQL: every test a
// migrated database of its own, in milliseconds, so tests run in parallel
// against the same SQL, constraints and errors as production.
//
// # A database per test
//
//	func TestUsers(t *testing.T) {
//		t.Parallel()
//		users := dbkit.NewBaseDatabase[User](dbtest.New(t, migrations.All...))
//		...
//	}
//
// [New] clones the test's database (CREATE DATABASE ... TEMPLATE) from a
// template database that the migrations built once, connects to it, and
// closes the connection when the test ends. The database is dropped when the
// test passes; when it fails it is kept and the test log says how to open it
// with psql. [Schema] does the same with a version string, a server or
// dbkit options of your choice; [NewConfig] returns the configuration only.
//
// [CheckSchema] fails a test whose models differ from its migrated
// database: one line keeps hand-written migrations and models in step.
//
// Templates are found again by a [Fingerprint] of the migration IDs, their
// checksums and Schema.Version. Go functions cannot be hashed, so a
// migration whose code changed under the same ID and checksum is not
// noticed: bump its checksum (or Version) when you do that.
// Test binaries racing to build the same template build it once (an
// advisory lock), and a template is only used once its migrations
// succeeded.
//
// # The server
//
// [New] uses the server of [Shared], found the first time it is needed from
// the first source that works:
//
//  1. DBKIT_TEST_DATABASE_URL: an existing server, such as a CI service
//     container; dbtest creates and drops databases there and leaves it
//     running.
//  2. Testcontainers, when a Docker engine answers: a postgres container
//     (DBKIT_TEST_POSTGRES_IMAGE, default postgres:15-alpine) with its data
//     on a tmpfs and durability off, one per test process.
//  3. The local initdb and postgres binaries: a server in /dev/shm (or
//     DBKIT_PG_TMPDIR, or the temporary directory), on a free port of
//     127.0.0.1, run as the "postgres" user when the tests run as root. The
//     test processes of a module's "go test ./..." share it: the first
//     starts it with a watchdog process, the others lease it, and the
//     watchdog stops it DBKIT_TEST_SERVER_IDLE (default 5s) after the last
//     one has exited, even if killed.
//
// DBKIT_TEST_SERVER=external|docker|local forces a source. When none works
// the error says what each one needed.
//
// A test binary may also own a server: [Start] (same sources, a local server
// of its own that dies with the process on Linux) and [Server.Stop], with
// databases from [Server.New] or [Server.NewDatabase].
//
// # Read replicas
//
// [StartCluster] starts, from the local binaries, a primary and n streaming
// replicas (hot standbys made by pg_basebackup, named replica1, replica2...,
// each on a port of its own) for tests of code that reads from replicas:
//
//	cluster, err := dbtest.StartCluster(ctx, 2)
//	...
//	t.Cleanup(func() { cluster.Stop(context.Background()) })
//	cfg := cluster.NewDatabase(t) // on the primary, replayed by the replicas, cfg.Replicas set
//
// [Cluster.Primary] is a [Server] like any other. [Cluster.WaitForReplay]
// waits until the replicas have replayed everything committed on the
// primary. Faults come on demand: [Standby.PauseReplay] makes a replica lag
// (it keeps answering, with the data as it was) until
// [Standby.ResumeReplay]; [Standby.Kill] crashes one (SIGKILL) and
// [Standby.Start] brings it back on the same port, streaming again.
// [Cluster.Stop] stops it all and removes the directories; on Linux the
// servers also die with the test process.
//
// # PgBouncer
//
// [StartPgBouncer] (or [NewPgBouncer], for one test) runs the local
// pgbouncer (apt-get install pgbouncer) in front of a Server, in transaction
// pooling mode unless [PoolMode] says otherwise, on 127.0.0.1. Its
// [PgBouncer.Config] names a database through it, with QueryExecMode exec
// and the server as DirectHost; [PgBouncer.Server] is a view of the Server
// whose test databases are reached through it (make test-pgbouncer runs
// integration tests so).
//
// # Patroni
//
// [StartPatroni] runs a one-member etcd and three PostgreSQL nodes under
// Patroni (apt-get install patroni etcd-server) on 127.0.0.1, for failover
// tests: [Patroni.Config] names every node with TargetSessionAttrs
// "read-write"; [Patroni.Switchover], [PatroniNode.KillPostmaster],
// [PatroniNode.KillNode] and [PatroniNode.Restart] disrupt it, and
// [Patroni.WaitHealthy] waits until it is whole again. A watchdog process
// removes it when the test process dies (Patroni starts PostgreSQL
// detached, out of reach of a death signal). make test-failover runs
// dbkit's failover tests on it (docs/ha.md).
package dbtest
