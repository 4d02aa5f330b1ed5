package dbkit

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// A uuid.UUID parameter encodes to the bytes pgx gave it before, for
// every parameter type and format, with fewer allocations where the
// parameter is a uuid.
func TestUUIDsEncodeAsBefore(t *testing.T) {
	plain, ours := pgtype.NewMap(), pgtype.NewMap()
	setUpTypes(ours)
	u := uuid.MustParse("01a216d3-06d7-7746-8bb8-60fe2b04d63b")
	oids := map[string]uint32{
		"uuid": pgtype.UUIDOID, "text": pgtype.TextOID, "varchar": pgtype.VarcharOID,
		"bytea": pgtype.ByteaOID, "int8": pgtype.Int8OID, "unknown": 0,
	}
	values := map[string]any{"uuid.UUID": u, "*uuid.UUID": &u, "nil *uuid.UUID": (*uuid.UUID)(nil)}
	for oidName, oid := range oids {
		for _, format := range []int16{pgtype.TextFormatCode, pgtype.BinaryFormatCode} {
			if oid == 0 && format == pgtype.BinaryFormatCode {
				continue // pgx encodes a parameter of unknown type as text only (ExtendedQueryBuilder.Build)
			}
			for valueName, v := range values {
				t.Run(fmt.Sprintf("%s/%d/%s", oidName, format, valueName), func(t *testing.T) {
					want, wantErr := plain.Encode(oid, format, v, nil)
					got, err := ours.Encode(oid, format, v, nil)
					if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) || (got == nil) != (want == nil) {
						t.Errorf("encoded %q (%v), pgx alone %q (%v)", got, err, want, wantErr)
					}
				})
			}
		}
	}
	if got, _ := ours.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, nil); !bytes.Equal(got, u[:]) {
		t.Errorf("binary uuid: %x, want %x", got, u[:])
	}
	buf := make([]byte, 0, 64)
	allocs := func(m *pgtype.Map) float64 {
		return testing.AllocsPerRun(100, func() { _, _ = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, buf[:0]) })
	}
	// One allocation is the test's own: u boxed for Encode.
	if got, before := allocs(ours), allocs(plain); got > 2 || got >= before {
		t.Errorf("a binary uuid parameter takes %v allocations, %v through pgx alone", got, before)
	}
}
