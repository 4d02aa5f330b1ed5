// Package wal reads and writes PostgreSQL write-ahead log locations
// (pg_lsn): a 64-bit byte position in the WAL, written as two hexadecimal
// halves, "16/B374D848".
package wal

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a WAL location. Zero is "no location" (PostgreSQL's 0/0, which no
// record has).
type LSN uint64

// ErrSyntax is the error of a text that is not a pg_lsn.
var ErrSyntax = errors.New("wal: not a WAL location (want two hexadecimal halves such as 16/B374D848)")

// Parse reads s as pg_lsn's text form: up to 8 hexadecimal digits, a '/',
// up to 8 more.
func Parse(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, ErrSyntax
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil { // (ParseUint refuses signs and '_' in base 16)
		return 0, ErrSyntax
	}
	return LSN(h<<32 | l), nil
}

// Scan reads a pg_lsn as database/sql gives it, text (a string or bytes);
// NULL is 0, no location. It makes *LSN a sql.Scanner.
func (l *LSN) Scan(src any) error {
	var err error
	switch v := src.(type) {
	case nil:
		*l = 0
	case string:
		*l, err = Parse(v)
	case []byte:
		*l, err = Parse(string(v))
	default:
		err = fmt.Errorf("wal: cannot read a WAL location from a %T", src)
	}
	return err
}

// String writes l as PostgreSQL does, "16/B374D848".
func (l LSN) String() string {
	return strings.ToUpper(strconv.FormatUint(uint64(l)>>32, 16)) + "/" + strings.ToUpper(strconv.FormatUint(uint64(l)&0xFFFFFFFF, 16))
}

// Diff returns how many bytes of WAL a is ahead of b, 0 when it is not.
func Diff(a, b LSN) int64 {
	if a <= b {
		return 0
	}
	return int64(min(uint64(a-b), 1<<63-1))
}

// The sizes of a WAL page's headers: the short one of every page, the long
// one of a segment's first page (SizeOfXLogShortPHD, SizeOfXLogLongPHD on
// 64-bit platforms).
const (
	shortPageHeader = 24
	longPageHeader  = 40
)

// AtBoundary returns l moved back to the page boundary when l points just
// past a page's header, as the server's WAL insert location
// (pg_current_wal_insert_lsn) does when no record has been inserted on the
// page yet; a standby that replayed everything before it reports the
// boundary itself (pg_last_wal_replay_lsn), and would never seem to reach
// l. blockSize and segmentSize are the server's wal_block_size and
// wal_segment_size; a zero one is not checked.
func AtBoundary(l LSN, blockSize, segmentSize uint64) LSN {
	switch {
	case segmentSize > 0 && uint64(l)%segmentSize == longPageHeader:
		return l - longPageHeader
	case blockSize > 0 && uint64(l)%blockSize == shortPageHeader && (segmentSize == 0 || uint64(l)%segmentSize != shortPageHeader):
		return l - shortPageHeader
	}
	return l
}
