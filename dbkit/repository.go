package dbkit

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/dbkit-go/database/internal/rowscan"
	"github.com/dbkit-go/database/tracing"
)

// BaseDatabase is the typed data-access object of a model that embeds
// [Model]: its repository, keyed by the UUIDv7 Model gives it. It is the
// [Repository] of the model with a uuid.UUID key; [NewBaseDatabase] makes
// one.
type BaseDatabase[T Entity] = Repository[T, uuid.UUID]

// Repository is the typed data-access object of one model T whose primary
// key is of type K: CRUD and queries, each call taking a context and
// returning typed results and dbkit errors. It is safe for concurrent use;
// make one per model at start-up and share it. Models embedding [Model] get
// theirs from [NewBaseDatabase] (K is uuid.UUID, IDs assigned by dbkit);
// others, with keys of their own (an identity bigint, a natural text key),
// from [NewRepository].
//
// Every method returns an error matching [ErrClosed] after [DB.Close], and an
// error matching [ErrInvalid] when the repository itself is unusable (see
// [NewBaseDatabase] and [NewRepository]).
type Repository[T any, K comparable] struct {
	db         *DB
	schema     *schema.Schema
	fields     *fieldResolver
	patchable  map[string]*schema.Field // what Patch may set, by Go, column and JSON name
	opts       repoOptions
	copy       copyPlan                           // how CreateMany can COPY, or why not
	text       textPlan                           // the fields whose text is checked before a write
	versionCol string                             // the column of the embedded Versioned, "" without one
	rows       rowscan.Scanner                    // how reads scan the model's rows
	get        rowscan.Scanner                    // Get's: rows, with the statement built once when it can be (keyRead)
	create     *createPlan                        // Create's INSERT built once, nil when it cannot be
	model      string                             // Go type name: "User"
	pk         clause.Column                      // the primary-key column
	omit       []string                           // what Update never writes: id, created_at, associations
	spanOpts   map[string][]trace.SpanStartOption // by span name
	names      spanNames
	err        error // why the repository is unusable, nil when it is fine
	viaBase    bool  // made by NewBaseDatabase: the model embeds dbkit.Model

	// notNull: the columns NOT NULL in the database, read at the first
	// FindCursor that needs them.
	notNull lazy[map[string]bool]
}

type spanNames struct {
	create, createMany, upsert, upsertMany, get, find, findOne, findPage, findCursor, count, exists,
	update, updateWhere, patch, delete, deleteWhere, hardDelete, restore string
}

// NewBaseDatabase returns the repository of model T on db. T must embed
// [Model] by value, which the compiler checks through the [Entity]
// constraint. Misuses the compiler cannot see (a pointer type argument such
// as *User, a nil db, a model GORM cannot parse) make every method return an
// error matching [ErrInvalid] that says what is wrong.
func NewBaseDatabase[T Entity](db *DB, opts ...RepositoryOption) *BaseDatabase[T] {
	return newRepository[T, uuid.UUID](db, true, opts)
}

// NewRepository returns the repository of model T, whose primary key is of
// type K, on db: for a model that does not embed [Model], such as one of an
// existing schema (`ID uint` with gorm.Model, a `bigint GENERATED ALWAYS
// AS IDENTITY`, a natural text key). Its rows keep the keys they are given
// or the database assigns (Create reads them back); everything else is as
// with [NewBaseDatabase]: conditions, pages and cursors, upserts, soft
// delete ([SoftDelete]) and optimistic locking ([Versioned]).
//
// The compiler cannot check K against T's primary key: a mismatch (a key
// of another type, a composite key) makes every method return an error
// matching [ErrInvalid] that says so, as other misuses do.
//
//	type Invoice struct {
//		Number string `gorm:"primaryKey"`
//		Total  int64
//	}
//	invoices := dbkit.NewRepository[Invoice, string](db)
//	inv, err := invoices.Get(ctx, "2026-0001")
func NewRepository[T any, K comparable](db *DB, opts ...RepositoryOption) *Repository[T, K] {
	return newRepository[T, K](db, false, opts)
}

func newRepository[T any, K comparable](db *DB, model bool, opts []RepositoryOption) *Repository[T, K] {
	typ := reflect.TypeFor[T]()
	b := &Repository[T, K]{db: db, model: typ.Name(), opts: repoOptions{maxPageSize: DefaultMaxPageSize}}
	for _, opt := range opts {
		if opt != nil {
			opt(&b.opts)
		}
	}
	if b.model == "" {
		b.model = typ.String()
	}
	b.viaBase = model
	b.err = b.init(typ, model)
	return b
}

func (b *Repository[T, K]) init(typ reflect.Type, embedsModel bool) (err error) {
	ctor := fmt.Sprintf("NewBaseDatabase[%s]", typ)
	if !embedsModel {
		ctor = fmt.Sprintf("NewRepository[%s, %s]", typ, reflect.TypeFor[K]())
	}
	if b.opts.maxPageSize < 1 {
		return fmt.Errorf("%w: %s: MaxPageSize must be 1 or more", ErrInvalid, ctor)
	}
	if b.db == nil {
		return fmt.Errorf("%w: %s: db is nil", ErrInvalid, ctor)
	}
	if typ.Kind() == reflect.Pointer {
		return fmt.Errorf("%w: %s: the type argument must be a struct type such as %s, not a pointer",
			ErrInvalid, ctor, typ.Elem())
	}
	if typ.Kind() != reflect.Struct {
		return fmt.Errorf("%w: %s: the type argument must be a struct type, not a %s",
			ErrInvalid, ctor, typ.Kind())
	}
	if f, ok := typ.FieldByName("Model"); embedsModel && (!ok || !f.Anonymous || f.Type != reflect.TypeFor[Model]()) {
		return fmt.Errorf("%w: %s: embed dbkit.Model by value, not by pointer", ErrInvalid, ctor)
	}
	stmt := &gorm.Statement{DB: b.db.gorm}
	if err := stmt.Parse(new(T)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, ctor, err)
	}
	b.schema = stmt.Schema
	b.rows = rowscan.New[T](b.schema)
	limits, err := b.opts.limits.withDefaults()
	if err != nil {
		return fmt.Errorf("%s: %w", ctor, err)
	}
	if b.fields, err = newFieldResolver(b.model, b.schema, b.opts.inputFields, limits); err != nil {
		return fmt.Errorf("%s: %w", ctor, err)
	}
	b.text = newTextPlan(b.schema)
	if b.patchable, err = patchableFields(b.model, b.schema, b.opts.patchable); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, ctor, err)
	}
	b.copy = newCopyPlan(b.schema)
	if !embedsModel {
		b.copy = copyPlan{reason: "it does not embed dbkit.Model"}
	}
	if f := b.schema.LookUpField("Version"); f != nil && reflect.PointerTo(typ).Implements(reflect.TypeFor[versionedBase]()) {
		b.versionCol = f.DBName
	}
	pk := b.schema.PrioritizedPrimaryField
	if pk == nil || !embedsModel && len(b.schema.PrimaryFields) != 1 {
		return fmt.Errorf("%w: %s: one primary key column is needed, the model has %d", ErrInvalid, ctor, len(b.schema.PrimaryFields))
	}
	if want := reflect.TypeFor[K](); pk.FieldType != want {
		return fmt.Errorf("%w: %s: the primary key %s is a %s", ErrInvalid, ctor, pk.Name, pk.FieldType)
	}
	b.pk = clause.Column{Table: clause.CurrentTable, Name: pk.DBName}
	var zero K
	b.get = b.rows
	if k := newKeyRead(b.db.gorm, new(T), b.byKey(zero), b.rows); k != nil {
		b.get = k
	}
	b.create = newCreatePlan(b.db.gorm, new(T))
	b.omit = []string{pk.DBName, clause.Associations}
	if f := b.schema.LookUpField("CreatedAt"); f != nil {
		b.omit = append(b.omit, f.DBName)
	}
	b.omit = slices.Clip(b.omit) // shared by concurrent calls: no spare capacity to append into
	// Each method's span starts with the same options; they are built once.
	// The operation is the method, "Get" of "User.Get", set at the start
	// where samplers see it.
	b.spanOpts = map[string][]trace.SpanStartOption{}
	name := func(op string) string {
		n := tracing.SpanName(b.model, op)
		b.spanOpts[n] = []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindInternal),
			// Not db.system.name nor db.operation.name: a repository call is
			// no database operation, and a backend counting them would count
			// every statement twice.
			trace.WithAttributes(
				tracing.Model.String(b.model),
				tracing.Operation.String(op),
				tracing.DBCollectionName.String(b.schema.Table),
			),
		}
		return n
	}
	b.names = spanNames{
		create: name("Create"), get: name("Get"), find: name("Find"), count: name("Count"),
		findPage: name("FindPage"), findCursor: name("FindCursor"),
		createMany: name("CreateMany"), upsert: name("Upsert"), upsertMany: name("UpsertMany"),
		patch: name("Patch"), hardDelete: name("HardDelete"), restore: name("Restore"),
		exists: name("Exists"), update: name("Update"), delete: name("Delete"),
		findOne: name("FindOne"), updateWhere: name("UpdateWhere"), deleteWhere: name("DeleteWhere"),
	}
	return nil
}

// checkKey refuses a text key that no text column can hold (invalid UTF-8,
// a NUL), as the value of any condition is refused, before any SQL:
// PostgreSQL would answer SQLSTATE 22021, neither ErrInvalid nor
// ErrNotFound.
func (b *Repository[T, K]) checkKey(op string, id K) error {
	if reflect.TypeFor[K]().Kind() != reflect.String {
		return nil // a uuid, an integer: no text to check
	}
	if err := checkTextValue(b.model, b.schema.PrioritizedPrimaryField, id); err != nil {
		return fmt.Errorf("dbkit: %s.%s: %w", b.model, op, err)
	}
	return nil
}

// byKey is the condition "primary key = id". A uuid.UUID key goes in as
// a pgtype.UUID: GORM binds that as one parameter for every value, so
// Get's statement can be built once (keyRead, boundAsIs), where a
// uuid.UUID, a driver.Valuer, would have it ask the value for NULL. (pgx
// encodes either as binary: see encodeUUIDsDirectly.)
func (b *Repository[T, K]) byKey(id K) clause.Eq {
	var v any = id
	if u, ok := v.(uuid.UUID); ok {
		v = pgtype.UUID{Bytes: u, Valid: true}
	}
	return clause.Eq{Column: b.pk, Value: v}
}

// idOf returns v's primary key, and whether it is set (not K's zero).
func (b *Repository[T, K]) idOf(ctx context.Context, v *T) (K, bool) {
	val, zero := b.schema.PrioritizedPrimaryField.ValueOf(ctx, reflect.ValueOf(v).Elem())
	id, ok := val.(K)
	return id, ok && !zero
}

// Table returns the model's table name.
func (b *Repository[T, K]) Table() string {
	if b.schema == nil {
		return ""
	}
	return b.schema.Table
}

// conn returns a fresh GORM statement for one call, bound to ctx, on the
// transaction ctx carries (see DB.InTx) or else on the pool. Both handles
// start a new statement at their first chained call (Clauses with no
// clause is one), into which ctx goes directly: Session{Context: ctx}
// would copy the Config and a statement only for the chained call to
// replace that statement, about 800 bytes per call. What it returns is
// that statement itself: one statement's chain starts from it, not two.
func (b *Repository[T, K]) conn(ctx context.Context) *gorm.DB {
	base := b.db.gorm
	if tx := b.db.txFrom(ctx); tx != nil {
		base = tx
	}
	s := base.Clauses()
	s.Statement.Context = ctx
	return s
}

// start opens the repository span of one call (WithRepositorySpans); without
// them, a span that does nothing (not the caller's span, which End must not
// end).
func (b *Repository[T, K]) start(ctx context.Context, name string) (context.Context, trace.Span) {
	if !b.db.repoSpans {
		return ctx, noSpan
	}
	return b.db.tracer.Start(ctx, name, b.spanOpts[name]...)
}

// finish translates err, prefixes it with the operation, and ends the span.
func (b *Repository[T, K]) finish(ctx context.Context, span trace.Span, op string, err error) error {
	if err != nil {
		err = fmt.Errorf("dbkit: %s.%s: %w", b.model, op, b.db.translate(ctx, err))
	}
	tracing.End(span, err, isNotFound)
	return err
}

var noSpan trace.Span = noop.Span{}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func (b *Repository[T, K]) invalid(op, format string, args ...any) error {
	return fmt.Errorf("dbkit: %s.%s: %w: %s", b.model, op, ErrInvalid, fmt.Sprintf(format, args...))
}

// Create inserts *v. For a model embedding [Model] it assigns v.ID (a
// UUIDv7) when it is zero; a key the database assigns (an identity) is read
// back into v. It sets CreatedAt and UpdatedAt when they are zero. Associations are saved as GORM
// saves them. When hooks or associations make it more than one statement,
// all of it runs in a transaction (in a savepoint inside [DB.InTx]): a
// failing hook or association leaves no row behind. Errors: a *[ConstraintError] matching [ErrDuplicate],
// [ErrForeignKey], [ErrCheck] or [ErrNotNull]; [ErrInvalid] for a nil v.
func (b *Repository[T, K]) Create(ctx context.Context, v *T) error {
	if b.err != nil {
		return b.err
	}
	if v == nil {
		return b.invalid("Create", "nil %s", b.model)
	}
	if err := b.text.check(b.model, reflect.ValueOf(v).Elem()); err != nil {
		return fmt.Errorf("dbkit: %s.Create: %w", b.model, err)
	}
	ctx, span := b.start(ctx, b.names.create)
	tx := b.conn(ctx)
	if b.create != nil {
		tx.Statement.Settings.Store(createSetting{}, b.create)
	}
	err := tx.Create(v).Error
	return b.finish(ctx, span, "Create", err)
}

// Get returns the row whose primary key is id, or an error matching
// [ErrNotFound]. opts may add [Filter]s, [WithDeleted], a row lock
// ([ForUpdate], which needs a transaction), [Preload] or [Select]. With an
// error it returns the zero T.
func (b *Repository[T, K]) Get(ctx context.Context, id K, opts ...QueryOption) (T, error) {
	var v T
	if b.err != nil {
		return v, b.err
	}
	if err := b.checkKey("Get", id); err != nil {
		return v, err
	}
	q, err := b.compileFor(ctx, "Get", opts)
	if err != nil {
		return v, err
	}
	ctx, span := b.start(ctx, b.names.get)
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		v = *new(T)
		tx := b.scoped(ctx, q).Set(rowscan.Setting, b.get)
		return tx.Clauses(clause.Where{Exprs: []clause.Expression{b.byKey(id)}}).Take(&v).Error
	})
	if err = b.finish(ctx, span, "Get", err); err != nil {
		return *new(T), err // not a row half read
	}
	return v, nil
}

// compileFor compiles opts for operation op and checks what depends on
// ctx: a row lock needs ctx to carry a transaction.
func (b *Repository[T, K]) compileFor(ctx context.Context, op string, opts []QueryOption) (compiled, error) {
	q, err := b.compileIn(ctx, opts)
	if err != nil {
		return q, fmt.Errorf("dbkit: %s.%s: %w", b.model, op, err)
	}
	return q, nil
}

// compileConds compiles the options of an operation that takes conditions
// only (Count, Exists, UpdateWhere, DeleteWhere).
func (b *Repository[T, K]) compileConds(op string, opts []QueryOption) (compiled, error) {
	q, err := compileQuery(b.fields, opts, true)
	if err != nil {
		return q, fmt.Errorf("dbkit: %s.%s: %w", b.model, op, err)
	}
	return q, nil
}

// compileIn compiles opts and checks that a row lock has a transaction in
// ctx to live in.
func (b *Repository[T, K]) compileIn(ctx context.Context, opts []QueryOption) (compiled, error) {
	q, err := compileQuery(b.fields, opts, false)
	if err == nil && q.lock != nil && b.db.txFrom(ctx) == nil {
		err = ErrNoTx
	}
	return q, err
}

// scoped applies q to a fresh statement on ctx's connection: conditions,
// order, limit, soft-delete scope, row lock, preloads and selected columns.
func (b *Repository[T, K]) scoped(ctx context.Context, q compiled) *gorm.DB {
	tx := b.conn(ctx)
	if q.unscoped {
		tx = tx.Unscoped()
	}
	if len(q.joins) > 0 {
		// The model's columns only: a joined table's would share their names.
		tx = tx.Clauses(fromClause(q.joins), clause.Select{Expression: clause.Expr{SQL: "?.*", Vars: []any{clause.Table{Name: clause.CurrentTable}}}})
	}
	if q.hasWhere() {
		tx = tx.Clauses(q.where)
	}
	if len(q.order) > 0 {
		tx = tx.Clauses(clause.OrderBy{Columns: q.order})
	}
	if q.limit > 0 {
		tx = tx.Limit(q.limit)
	}
	if q.lock != nil {
		lock := *q.lock
		if len(q.joins) > 0 {
			// The model's rows only: PostgreSQL refuses to lock the
			// nullable side of an outer join.
			lock.Table = clause.Table{Name: clause.CurrentTable}
		}
		tx = tx.Clauses(lock)
	}
	for _, p := range q.preloads {
		tx = tx.Preload(p)
	}
	if len(q.selects) > 0 {
		if len(q.joins) > 0 {
			cols := make([]clause.Column, len(q.selects))
			for i, name := range q.selects {
				cols[i] = clause.Column{Table: clause.CurrentTable, Name: name}
			}
			tx = tx.Clauses(clause.Select{Columns: cols})
		} else {
			tx = tx.Select(q.selects)
		}
	}
	return tx
}

// rowsOf is scoped for a read whose rows are the model's: they are
// scanned with the repository's compiled plan (see internal/rowscan).
func (b *Repository[T, K]) rowsOf(ctx context.Context, q compiled) *gorm.DB {
	return b.scoped(ctx, q).Set(rowscan.Setting, b.rows)
}

// Find returns the rows matching every [Filter] among opts (none: all
// rows), sorted by [OrderBy]/[OrderByDesc] and cut at [Limit]. Without a
// Limit it returns every matching row. No match is an empty slice, not an
// error. Unknown fields and unsupported values are errors matching
// [ErrInvalid], returned before any SQL is sent.
func (b *Repository[T, K]) Find(ctx context.Context, opts ...QueryOption) ([]T, error) {
	if b.err != nil {
		return nil, b.err
	}
	q, err := b.compileFor(ctx, "Find", opts)
	if err != nil {
		return nil, err
	}
	ctx, span := b.start(ctx, b.names.find)
	var out []T
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		out = []T{}
		return b.rowsOf(ctx, q).Find(&out).Error
	})
	if err != nil {
		out = nil
	}
	if b.db.returnedRows && span.IsRecording() {
		span.SetAttributes(tracing.DBReturnedRows.Int(len(out)))
	}
	return out, b.finish(ctx, span, "Find", err)
}

// Count returns the number of rows matching every condition of opts
// ([Filter]s, [WithDeleted], [OnlyDeleted]).
func (b *Repository[T, K]) Count(ctx context.Context, opts ...QueryOption) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	q, err := b.compileConds("Count", opts)
	if err != nil {
		return 0, err
	}
	ctx, span := b.start(ctx, b.names.count)
	var n int64
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		n = 0
		return b.scoped(ctx, q).Model(new(T)).Count(&n).Error
	})
	return n, b.finish(ctx, span, "Count", err)
}

// Exists reports whether at least one row matches every condition of opts
// ([Filter]s, [WithDeleted], [OnlyDeleted]). It stops at the first match,
// so it is cheaper than Count.
func (b *Repository[T, K]) Exists(ctx context.Context, opts ...QueryOption) (bool, error) {
	if b.err != nil {
		return false, b.err
	}
	q, err := b.compileConds("Exists", opts)
	if err != nil {
		return false, err
	}
	ctx, span := b.start(ctx, b.names.exists)
	var ones []int
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		ones = nil
		return b.scoped(ctx, q).Model(new(T)).Clauses(clause.Select{Expression: clause.Expr{SQL: "1"}}).Limit(1).Find(&ones).Error
	})
	return len(ones) > 0, b.finish(ctx, span, "Exists", err)
}

// Update writes every column of *v except the primary key and CreatedAt to
// the row with v's ID, and sets v.UpdatedAt to the time of the update.
// Zero values are written too: Update replaces the row, it does not merge.
// Associations are not touched. For a [Versioned] model the row is written
// only if its version is still v.Version, which is then incremented.
//
// Errors: [ErrNotFound] when no row has that ID (or it is soft-deleted);
// [ErrStale] when a Versioned row has another version; [ErrInvalid] when v is
// nil or its ID is zero; a *[ConstraintError].
func (b *Repository[T, K]) Update(ctx context.Context, v *T) error {
	if b.err != nil {
		return b.err
	}
	if v == nil {
		return b.invalid("Update", "nil %s", b.model)
	}
	id, set := b.idOf(ctx, v)
	if !set {
		return b.invalid("Update", "%s has no ID: create it first", b.model)
	}
	if err := b.text.check(b.model, reflect.ValueOf(v).Elem()); err != nil {
		return fmt.Errorf("dbkit: %s.Update: %w", b.model, err)
	}
	ctx, span := b.start(ctx, b.names.update)
	tx := b.conn(ctx).Model(v)
	var ver *Versioned
	if vb, ok := any(v).(versionedBase); ok {
		ver = vb.versioned()
		tx = tx.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: b.versionCol}, Value: ver.Version})
		ver.Version++
	}
	res := tx.Select("*").Omit(b.omit...).Updates(v)
	err := res.Error
	if err == nil && res.RowsAffected == 0 {
		err = ErrNotFound
		if ver != nil {
			ver.Version--
			var ones []int
			exists := b.conn(ctx).Model(new(T)).Select("1").Where(b.byKey(id)).Limit(1).Find(&ones)
			if exists.Error != nil {
				err = exists.Error
			} else if len(ones) > 0 {
				err = ErrStale
			}
		}
	} else if err != nil && ver != nil {
		ver.Version--
	}
	return b.finish(ctx, span, "Update", err)
}

// Patch sets the named fields of the row whose primary key is id, without
// reading it first, and returns the row as updated. Only fields made
// patchable ([Patchable], or the tag dbkit:"patch") can be set, and values
// are converted to the fields' types, so a request body can go straight in
// without reaching a column nobody listed; the primary key, timestamps,
// DeletedAt and Version never can (UpdatedAt is set to now, Version
// incremented). Of the model's hooks only AfterFind runs, on the row
// returned, as for [Repository.Get].
//
// Errors: [ErrNotFound] when no row has that ID; [ErrInvalid] for a field
// that cannot be set, a value that does not fit, or no fields at all; a
// *[ConstraintError].
func (b *Repository[T, K]) Patch(ctx context.Context, id K, fields map[string]any) (T, error) {
	var out T
	if b.err != nil {
		return out, b.err
	}
	if err := b.checkKey("Patch", id); err != nil {
		return out, err
	}
	set, err := b.patchAssignments(fields)
	if err != nil {
		return out, fmt.Errorf("dbkit: %s.Patch: %w", b.model, err)
	}
	ctx, span := b.start(ctx, b.names.patch)
	// Built by GORM (updated_at is in set: GORM adds it to no map update
	// when hooks are skipped), run with RETURNING * into out.
	stmt := b.conn(ctx).Session(&gorm.Session{DryRun: true, SkipHooks: true}).Model(new(T)).
		Clauses(clause.Returning{}).Where(b.byKey(id)).Updates(set).Statement
	if stmt.Error != nil {
		return out, b.finish(ctx, span, "Patch", stmt.Error)
	}
	var rows []T
	// Find, not Scan: the row returned gets the AfterFind hooks Get's gets.
	err = ownSQL(b.conn(ctx).Raw(stmt.SQL.String(), stmt.Vars...), "UPDATE").Find(&rows).Error
	if err == nil && len(rows) == 0 {
		err = ErrNotFound
	}
	if err == nil {
		out = rows[0]
	}
	return out, b.finish(ctx, span, "Patch", err)
}

// patchableFields indexes the fields Patch may set: those named in allow
// and those tagged dbkit:"patch". The primary key, timestamps, DeletedAt and
// Version never are.
func patchableFields(model string, s *schema.Schema, allow []string) (map[string]*schema.Field, error) {
	out := map[string]*schema.Field{}
	add := func(f *schema.Field) error {
		if f.PrimaryKey || f.Name == "CreatedAt" || f.Name == "UpdatedAt" || f.FieldType == deletedAtType ||
			f.Name == "Version" || !f.Updatable {
			return fmt.Errorf("%s.%s cannot be patchable", model, f.Name)
		}
		indexField(out, f)
		return nil
	}
	for _, name := range allow {
		f := s.LookUpField(name)
		if f == nil || f.DBName == "" {
			return nil, fmt.Errorf("Patchable: %s has no field %s", model, quote(name))
		}
		if err := add(f); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Fields {
		if f.DBName != "" && f.StructField.Tag.Get("dbkit") == "patch" {
			if err := add(f); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// patchAssignments resolves and converts the fields of a Patch.
func (b *Repository[T, K]) patchAssignments(fields map[string]any) (map[string]any, error) {
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no fields to set", ErrInvalid)
	}
	set := make(map[string]any, len(fields)+1)
	for name, value := range fields {
		f, ok := b.patchable[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s: %s cannot be patched: list the fields Patch may set with Patchable or tag them dbkit:\"patch\"", ErrInvalid, b.model, quote(name))
		}
		v, err := b.fields.convert(f, value)
		if err != nil {
			return nil, err
		}
		if v == nil && !holdsNull(f) {
			return nil, fmt.Errorf("%w: %s.%s cannot be null", ErrInvalid, b.model, f.Name)
		}
		set[f.DBName] = v
	}
	if b.versionCol != "" {
		set[b.versionCol] = gorm.Expr("? + 1", clause.Column{Table: clause.CurrentTable, Name: b.versionCol})
	}
	if f := b.schema.LookUpField("UpdatedAt"); f != nil {
		set[f.DBName] = now() // set here: the hook-less dry run Patch builds its SQL with would not
	}
	return set, nil
}

// Delete deletes the row whose primary key is id, or returns an error
// matching [ErrNotFound] when there is none. For a model with [SoftDelete]
// it marks the row deleted (and a deleted row is not found again).
func (b *Repository[T, K]) Delete(ctx context.Context, id K) error {
	return b.delete(ctx, "Delete", b.names.delete, id, false)
}

// HardDelete removes the row whose primary key is id, soft-deleted or not;
// for a model without [SoftDelete] it is Delete.
func (b *Repository[T, K]) HardDelete(ctx context.Context, id K) error {
	return b.delete(ctx, "HardDelete", b.names.hardDelete, id, true)
}

func (b *Repository[T, K]) delete(ctx context.Context, op, spanName string, id K, hard bool) error {
	if b.err != nil {
		return b.err
	}
	if err := b.checkKey(op, id); err != nil {
		return err
	}
	ctx, span := b.start(ctx, spanName)
	tx := b.conn(ctx)
	if hard {
		tx = tx.Unscoped()
	}
	res := tx.Where(b.byKey(id)).Delete(new(T))
	err := res.Error
	if err == nil && res.RowsAffected == 0 {
		err = ErrNotFound
	}
	return b.finish(ctx, span, op, err)
}

// Restore undeletes the soft-deleted row whose primary key is id. Errors:
// [ErrNotFound] when there is no such deleted row; [ErrInvalid] for a model
// without [SoftDelete]; a *[ConstraintError] when a partial unique index
// now has another live row with the same value.
func (b *Repository[T, K]) Restore(ctx context.Context, id K) error {
	if b.err != nil {
		return b.err
	}
	if err := b.checkKey("Restore", id); err != nil {
		return err
	}
	f := b.fields.deletedAt
	if f == nil {
		return b.invalid("Restore", "%s has no soft delete", b.model)
	}
	ctx, span := b.start(ctx, b.names.restore)
	col := clause.Column{Table: clause.CurrentTable, Name: f.DBName}
	res := b.conn(ctx).Unscoped().Model(new(T)).
		Where(b.byKey(id)).Where(clause.Expr{SQL: "? IS NOT NULL", Vars: []any{col}}).
		Update(f.DBName, nil)
	err := res.Error
	if err == nil && res.RowsAffected == 0 {
		err = ErrNotFound
	}
	return b.finish(ctx, span, "Restore", err)
}

// Query is the escape hatch for what the methods above cannot express: GORM's
// typed generics API, gorm.G[T], on this repository's connection:
//
//	rows, err := users.Query(ctx).Where("name LIKE ?", "A%").Order("name").Find(ctx)
//
// GORM's generics API takes the context in the call that runs the query:
// pass the same ctx there, it is the one that bounds the statement.
//
// Rows it creates get IDs and timestamps as with Create. Errors from the
// statement come back as the methods' do, prefixed "dbkit: Model.Query:"
// and translated (*[ConstraintError], values withheld, ctx.Err() on
// cancellation, [ErrUnavailable]); not-found is [ErrNotFound], which also
// matches gorm.ErrRecordNotFound. Errors of Row and Rows are not: GORM hands
// them back from database/sql untouched (its statement span and log see no
// error either).
// Strings given to Where, Order or Select go into the SQL as written: never
// pass request input there.
//
// On a repository that cannot work (see [NewBaseDatabase]) or after
// [DB.Close], every query it builds fails with that error.
func (b *Repository[T, K]) Query(ctx context.Context) gorm.Interface[T] {
	if b.db == nil {
		failed, _ := gorm.Open(nil, &gorm.Config{Logger: logger.Discard})
		_ = failed.AddError(b.err)
		return gorm.G[T](failed)
	}
	tx := b.conn(ctx)
	if b.err != nil {
		_ = tx.AddError(b.err)
	}
	// After Close, the pool itself answers ErrClosed, to Row too (a GORM
	// statement with an error already set would give Row a nil *sql.Row).
	return gorm.G[T](tx, escapeHatch{where: b.model + ".Query"})
}

// escapeHatch marks the statements built from [Repository.Query] (GORM's
// generic API copies the statement per call, but applies its options to
// each copy), so that their errors get the repository's prefix and
// sentinels: "dbkit: User.Query: record not found", matching ErrNotFound.
type escapeHatch struct{ where string }

type escapeHatchKey struct{}

// Build adds nothing to the SQL: escapeHatch is a clause only to reach the
// statement.
func (escapeHatch) Build(clause.Builder) {}

// ModifyStatement marks the statement.
func (e escapeHatch) ModifyStatement(stmt *gorm.Statement) {
	stmt.Settings.Store(escapeHatchKey{}, e.where)
}
