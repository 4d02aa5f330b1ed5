// Package dbtest gives tests a real, throwaway PostgreSQL.
//
// # The server
//
// [Start] returns a [Server] from the first source that works:
//
//  1. DBKIT_TEST_DATABASE_URL: an existing server, such as a CI service
//     container. Start creates databases on it and Stop leaves it running.
//  2. Testcontainers, when a Docker engine answers: a postgres container
//     (DBKIT_TEST_POSTGRES_IMAGE, default postgres:15-alpine) on a tmpfs.
//  3. The local initdb and postgres binaries: a server in a temporary
//     directory, on a free port of 127.0.0.1, run as the "postgres" user when
//     the tests run as root. On Linux it dies with the test process.
//
// DBKIT_TEST_SERVER=external|docker|local forces a source.
//
// Start one server per test binary in TestMain and stop it there:
//
//	var srv *dbtest.Server
//
//	func TestMain(m *testing.M) {
//		var err error
//		srv, err = dbtest.Start(context.Background())
//		if err != nil {
//			log.Fatal(err)
//		}
//		code := m.Run()
//		srv.Stop(context.Background())
//		os.Exit(code)
//	}
//
// # A database per test
//
// [Server.New] gives the calling test a database of its own, connected and
// migrated, so tests can run with t.Parallel():
//
//	func TestUsers(t *testing.T) {
//		t.Parallel()
//		db := srv.New(t, dbkit.WithMigrations(migrations...))
//		users := dbkit.NewBaseDatabase[User](db)
//		...
//	}
//
// The database is dropped when the test passes. When it fails the database
// is kept and the test log says how to open it with psql.
package dbtest
