package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunPairsSamplesByRun(t *testing.T) {
	in := `goos: linux
BenchmarkGet/impl=dbkit-2   100   110 ns/op   6 allocs/op
BenchmarkGet/impl=gorm-2    100   100 ns/op   5 allocs/op
BenchmarkGet/impl=gorm-2    100   200 ns/op   5 allocs/op
BenchmarkGet/impl=dbkit-2   100   200 ns/op   6 allocs/op
BenchmarkGet/impl=gorm-2    100   100 ns/op   5 allocs/op
BenchmarkGet/impl=dbkit-2   100   130 ns/op   6 allocs/op
PASS
`
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out, "gorm", ""); err != nil {
		t.Fatal(err)
	}
	// Ratios per run: 1.1, 1.0, 1.3 -> median 1.1, min 1.0, max 1.3.
	if !strings.Contains(out.String(), "Get                          dbkit      1.100x   1.000x   1.300x    3") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestRunWithoutBase(t *testing.T) {
	err := run(strings.NewReader("BenchmarkGet/impl=dbkit-2 1 1 ns/op\n"), &bytes.Buffer{}, "gorm", "")
	if err == nil {
		t.Error("want an error when no base impl is present")
	}
}

func TestGoals(t *testing.T) {
	in := `BenchmarkGet/impl=off-2   100   100 ns/op
BenchmarkGet/impl=on-2    100   150 ns/op
`
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out, "off", "Get/on<=1.6"); err != nil || !strings.Contains(out.String(), "goal Get/on <= 1.60x: met, median 1.500x") {
		t.Errorf("met goal: %v\n%s", err, out.String())
	}
	for _, goal := range []string{"Get/on<=1.4", "Get/other<=2"} {
		out.Reset()
		if err := run(strings.NewReader(in), &out, "off", goal); err == nil {
			t.Errorf("goal %s: no error\n%s", goal, out.String())
		}
	}
	if err := run(strings.NewReader(in), &out, "off", "Get/on"); err == nil {
		t.Error("a malformed goal: no error")
	}
}
