package wal

import "testing"

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want LSN
		ok   bool
	}{
		{"0/0", 0, true},
		{"16/B374D848", 0x16_B374D848, true},
		{"ffffffff/ffffffff", 0xFFFFFFFF_FFFFFFFF, true},
		{"0/1", 1, true},
		{"", 0, false},
		{"16", 0, false},
		{"/1", 0, false},
		{"1/", 0, false},
		{"1/2/3", 0, false},
		{"123456789/0", 0, false},
		{"+1/0", 0, false},
		{"0/-1", 0, false},
		{"g/0", 0, false},
		{"1_0/0", 0, false},
	} {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, ok=%v", tt.in, uint64(got), err, uint64(tt.want), tt.ok)
		}
	}
}

func TestString(t *testing.T) {
	if got := LSN(0x16_B374D848).String(); got != "16/B374D848" {
		t.Errorf("String = %s", got)
	}
	if got := LSN(0).String(); got != "0/0" {
		t.Errorf("String = %s", got)
	}
}

func TestDiff(t *testing.T) {
	if Diff(10, 3) != 7 || Diff(3, 10) != 0 || Diff(5, 5) != 0 || Diff(^LSN(0), 0) != 1<<63-1 {
		t.Error("Diff")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "ffffffff/ffffffff", "1/", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(l.String())
		if err != nil || back != l {
			t.Fatalf("Parse(%q) = %v, which reads back as %v, %v", s, l, back, err)
		}
	})
}

func TestAtBoundary(t *testing.T) {
	const block, seg = 8192, 16 << 20
	for _, tt := range []struct{ in, want LSN }{
		{0x5000028, 0x5000000},              // a segment's first page: past its long header
		{0x5002018, 0x5002000},              // another page: past its short header
		{0x5002020, 0x5002020},              // a record on the page
		{0x5000018, 0x5000018},              // 24 bytes into a segment: within its long header, not a short one
		{0x5001FF8, 0x5001FF8},              // before the boundary
		{LSN(seg) + 40, LSN(seg)},           // the second segment
		{LSN(3*block) + 24, LSN(3 * block)}, // any page
	} {
		if got := AtBoundary(tt.in, block, seg); got != tt.want {
			t.Errorf("AtBoundary(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := AtBoundary(0x5000028, 0, 0); got != 0x5000028 {
		t.Errorf("sizes unknown: %v", got)
	}
}

func TestScan(t *testing.T) {
	for _, tt := range []struct {
		src  any
		want LSN
		ok   bool
	}{
		{"16/B374D848", 0x16_B374D848, true},
		{[]byte("0/1"), 1, true},
		{nil, 0, true},
		{"16-B374D848", 0, false},
		{int64(5), 0, false},
	} {
		l := LSN(7)
		err := l.Scan(tt.src)
		if (err == nil) != tt.ok || (tt.ok && l != tt.want) {
			t.Errorf("Scan(%#v) = %v, %v; want %v, ok %v", tt.src, l, err, tt.want, tt.ok)
		}
	}
}
