// Package dbkit connects Go services to PostgreSQL through GORM and gives each
// model a typed, traced data-access object.
//
// # Configuration
//
// A [Config] says where the database is; [ConfigFromEnv] reads DATABASE_URL or
// libpq's PG* variables, [ParseURL] reads a postgres:// URL. [Config.Validate]
// reports every invalid field at once in a *[ConfigError]. No form of a
// Config shows its password, except [Config.DSN].
//
// # Connecting
//
// [Connect] validates the Config, opens a pool, waits for the server (retrying
// while it starts), checks it with SELECT 1 and applies the migrations given
// with [WithMigrations]. [DB.Health] is a readiness check; [DB.Close] refuses
// new work at once, waits for what runs until its ctx ends, then cuts the
// rest; it may be called more than once.
//
//	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(migrations...))
//	if err != nil {
//		return err
//	}
//	defer db.Close(context.Background())
//
// # Models and repositories
//
// Models embed [Model] (a UUIDv7 ID and timestamps). [NewBaseDatabase] returns
// the repository of a model, a [BaseDatabase] (a [Repository] keyed by
// uuid.UUID; [NewRepository] gives one to a model with a key of its own): Create, Get, Find, Count,
// Exists, Update and Delete, typed and bound to a context. [Repository.Query]
// is the model's escape hatch to GORM's generics API; [DB.Gorm] (GORM on
// dbkit's connection), [DB.Exec] and [DB.WithPgxConn] (pgx itself) are the
// DB's, with ctx's transaction, error translation and telemetry kept;
// [DB.SQL] is the pool, without them; [WithGormPlugins] adds GORM plugins.
//
//	type User struct {
//		dbkit.Model
//		Email string `gorm:"uniqueIndex;not null"`
//	}
//	users := dbkit.NewBaseDatabase[User](db)
//	err := users.Create(ctx, &User{Email: "ada@example.com"})
//
// GORM writes all the SQL. The repository's reads (Get, Find, FindOne,
// FindPage, FindCursor) scan their rows with a plan compiled once per model
// instead of GORM's per-row reflection: the values are those GORM's scan
// gives, hooks, preloads, Select, soft delete and pages work as before, and
// a 100-row read allocates less than half as much. A Get by key and a
// Create send SQL GORM built once, when the repository was made, unless
// something changed the statement (an option such as a Filter, Select or
// row lock, a plugin's callback) or, for Create, the row holds a value
// GORM writes as SQL of its own or as a list; then GORM builds it again.
// Some models never take that shortcut (docs/performance.md says which).
// The escape hatches use GORM's own scan and building. docs/performance.md
// has the figures.
//
// # Conditions
//
// A [Filter] is every condition, and every read and write by condition
// takes it: Get, Find, [Repository.FindOne], FindPage, FindCursor, Count,
// Exists, [Repository.UpdateWhere], [Repository.DeleteWhere]. Code
// makes them with [Eq], [Ne], [Gt], [Gte], [Lt], [Lte], [In], [Like],
// [IsNull], [Between], [Or], [And] and [Not]; writes by condition refuse to
// run with none unless given [AllRows].
//
// # Queries from request input
//
// [Filter] (field, operator, value; or OR/AND/NOT groups), [FilterFromQuery]
// and [SortBy] take fields and values from a request: fields are checked
// against the model's schema (json:"-" and dbkit:"nofilter" fields are
// refused), values converted to the fields' types and bound, before any SQL
// is sent. Sizes and counts are bounded by the repository's [InputLimits]
// (see [Limits]), text that is not valid UTF-8 or holds a NUL is refused,
// and messages quote at most a short prefix of the input.
// [Repository.FindPage] gives offset pages, [Repository.FindCursor]
// keyset pages with signed cursors.
//
// # Schema drift
//
// [DB.CheckSchema] compares each model's GORM schema with the migrated
// database and returns a *[SchemaDriftError] ([ErrSchemaDrift]) listing
// every difference: a missing table or column, a type, a NOT NULL, a unique
// index, an index, the primary key. [WithSchemaCheck] runs it in Connect,
// after the migrations, and fails; [WithSchemaCheckWarn] logs instead. In a
// test it is one line, dbtest.CheckSchema(t, db, &User{}).
//
// # Writes, locking and transactions
//
// [Repository.CreateMany] writes with COPY; [Repository.Upsert] returns
// the stored row; [SoftDelete] and [Versioned] embeds add soft delete and
// optimistic locking ([ErrStale]); [ForUpdate] and [SkipLocked] lock rows.
// [DB.InTx] runs a function in a transaction that every repository call
// with its ctx joins, with savepoints when nested and optional retries of
// serialization failures.
//
// # Read replicas
//
// With [Config.Replicas], the repository's reads go to streaming replicas
// in the rotation, round robin; writes, transactions and everything dbkit
// cannot know to be a read go to the primary, and so do reads under
// [OnPrimary]. A [Session] in ctx ([WithSession]) gives read-your-writes:
// after a write, its reads go to a replica only once that replica has
// replayed the write, and [Session.Token] carries the position to the
// user's next request ([NewSession]). Replicas whose lag passes
// [Config.MaxReplicaLagBytes] or [Config.MaxReplicaLag], or that stop
// answering, leave the rotation until a check finds them healthy; a read
// that fails on a replica that died runs again elsewhere. docs/scaling.md
// has the details.
//
// # Failover
//
// [Config.Fallbacks] lists the other servers of a cluster (libpq's
// "host1:port1,host2:port2"), and [Config.TargetSessionAttrs] "read-write"
// makes each new connection settle on the primary. When the primary
// changes, the pool leaves the old one at once: its connections are
// discarded before their next use, the change is logged and counted, and
// statement spans name the new server. Calls in flight fail with an error
// matching [ErrUnavailable] (not applied: try again) or [ErrCommitUnknown]
// (a write or COMMIT whose answer was lost: check first); reads outside a
// transaction run once more by themselves. docs/ha.md has the set-up, the
// Patroni settings and the figures measured on a real cluster.
//
// # Errors
//
// Sentinels match with errors.Is: [ErrNotFound] (which also matches
// gorm.ErrRecordNotFound), [ErrInvalid], [ErrClosed], and the constraint
// kinds [ErrDuplicate], [ErrForeignKey], [ErrCheck], [ErrNotNull] and
// [ErrExclusion], carried by a *[ConstraintError] that names the constraint,
// table and column. Inside transactions: [ErrSchemaChanged] (retried by
// [RetrySerializationFailures]) and [ErrCommitUnknown]; a server out of
// reach or restarting: [ErrUnavailable]. They are mapped from PostgreSQL's
// SQLSTATE codes, never from error text. Connection failures are a
// *[ConnectError].
//
// No error's text holds a value of the query: the server's message, detail
// and hint may quote one whatever the SQLSTATE (a bound value cast to
// regclass, a trigger's RAISE), so they are withheld from every server
// error, which says its severity, SQLSTATE, condition name, position and the
// objects concerned instead ("ERROR: undefined_table (SQLSTATE 42P01)").
// The *pgconn.PgError, which holds the values, stays reachable with
// errors.As, for code that decides to show them.
//
// # Tracing
//
// With [WithTracerProvider], Connect, Health, Close and migrations get
// session spans, every repository call a span named after the model
// ("User.Get"), and every SQL statement a client span without its parameter
// values. See package tracing. [WithTraceComments] also puts the trace
// context of each statement's span in its SQL, as a sqlcommenter comment,
// where pg_stat_activity and the server's log show it.
package dbkit
