package rowscan

import (
	"context"
	"database/sql"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// planned has a field of every type the plan scans itself.
type planned struct {
	S   string
	B   bool
	I   int
	I8  int8
	I16 int16
	I32 int32
	I64 int64
	U   uint
	U8  uint8
	U16 uint16
	U32 uint32
	U64 uint64
	F32 float32
	F64 float64
	T   time.Time
	By  []byte
	ID  uuid.UUID
	D   gorm.DeletedAt
	NS  sql.NullString
	NI  sql.NullInt64
	N32 sql.NullInt32
	NF  sql.NullFloat64
	NB  sql.NullBool
	NT  sql.NullTime
	SP  *string
	BP  *bool
	IP  *int
	I3P *int32
	I6P *int64
	UP  *uint
	U6P *uint64
	FP  *float64
	TP  *time.Time
	IDP *uuid.UUID
}

// dirty returns a planned with no field zero.
func dirty() planned {
	s, b, i, i32, i64, u, u64, f := "s", true, 1, int32(2), int64(3), uint(4), uint64(5), 6.5
	now := time.Unix(1e9, 0)
	id := uuid.MustParse("01234567-89ab-cdef-0123-456789abcdef")
	return planned{
		S: s, B: b, I: i, I8: 1, I16: 1, I32: 1, I64: 1, U: 1, U8: 1, U16: 1, U32: 1, U64: 1, F32: 1, F64: 1, T: now,
		By: []byte("b"), ID: id, D: gorm.DeletedAt{Time: now, Valid: true},
		NS: sql.NullString{String: s, Valid: true}, NI: sql.NullInt64{Int64: 1, Valid: true},
		N32: sql.NullInt32{Int32: 1, Valid: true}, NF: sql.NullFloat64{Float64: 1, Valid: true},
		NB: sql.NullBool{Bool: true, Valid: true}, NT: sql.NullTime{Time: now, Valid: true},
		SP: &s, BP: &b, IP: &i, I3P: &i32, I6P: &i64, UP: &u, U6P: &u64, FP: &f, TP: &now, IDP: &id,
	}
}

// A NULL does to a field what GORM's setter for its type does, on a
// destination that is not fresh too: leaves it as it was, or clears it.
// (Through the repository every destination is fresh, where both agree
// anyway; this holds the clear flags to GORM's setters.)
func TestNullLikeGORMSetters(t *testing.T) {
	s, err := schema.Parse(&planned{}, &sync.Map{}, schema.NamingStrategy{})
	if err != nil {
		t.Fatal(err)
	}
	p := New[planned](s)
	ctx := context.Background()
	for _, f := range s.Fields {
		fp := p.fields[f]
		if fp == nil || fp.newHolder == nil {
			t.Errorf("%s (%s): not scanned by the plan", f.Name, f.FieldType)
			continue
		}
		// GORM: its pooled **T holds nil after a NULL, then Set.
		want := dirty()
		v := f.NewValuePool.Get()
		reflect.ValueOf(v).Elem().SetZero()
		if err := f.Set(ctx, reflect.ValueOf(&want).Elem(), v); err != nil {
			t.Fatalf("%s: GORM's Set: %v", f.Name, err)
		}
		got := dirty()
		h := fp.newHolder()
		if err := h.Scan(nil); err != nil {
			t.Fatalf("%s: Scan(nil): %v", f.Name, err)
		}
		h.set(unsafe.Add(unsafe.Pointer(&got), fp.offset))
		g, w := reflect.ValueOf(got).FieldByName(f.Name), reflect.ValueOf(want).FieldByName(f.Name)
		if !reflect.DeepEqual(g.Interface(), w.Interface()) {
			t.Errorf("%s (%s) after a NULL: the plan gives %#v, GORM %#v", f.Name, f.FieldType, g.Interface(), w.Interface())
		}
	}
}

// A []byte read is copied, as database/sql's conversion copies it: the
// driver may reuse the buffer it handed over for the next row.
func TestBytesAreCopied(t *testing.T) {
	h := holderFor(reflect.TypeFor[[]byte]())()
	buf := []byte("abc")
	if err := h.Scan(buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'x'
	var got []byte
	h.set(unsafe.Pointer(&got))
	if string(got) != "abc" {
		t.Errorf("read %q, then the driver's buffer changed it to %q", "abc", got)
	}
}
