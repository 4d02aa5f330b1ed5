// Command benchratio reads `go test -bench` output holding several runs of
// benchmarks named Name/impl=X and prints, for each benchmark and impl, the
// median and range of its ns/op divided by the base impl's ns/op in the same
// run. Pairing each sample with the base measured seconds before it cancels
// the machine's drift, which on shared machines is larger than the
// differences being measured; benchstat compares the two distributions
// unpaired and cannot see through it.
//
//	go run ./internal/benchratio -base gorm,pgx bench.txt
//
// With several bases, each benchmark is divided by the first of them it has.
// -goal lists goals on the median ratios, such as
// "OverheadTelemetryGet/on<=1.7"; each is reported met or missed, and a
// missed one (or one with no samples) makes the command fail.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	base := flag.String("base", "gorm", "the impl the others are divided by (comma-separated: the first one a benchmark has)")
	goals := flag.String("goal", "", "comma-separated goals on median ratios: Bench/impl<=ratio")
	flag.Parse()
	var in io.Reader = os.Stdin
	if flag.NArg() > 0 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	if err := run(in, os.Stdout, *base, *goals); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
}

type key struct{ bench, impl string }

func run(in io.Reader, out io.Writer, bases, goals string) error {
	current := map[string]map[string]float64{} // bench -> impl -> ns/op, for the run under way
	ratios := map[key][]float64{}
	var order []key
	var benches []string // in order of first appearance
	flush := func(bench string) {
		run := current[bench]
		var base string
		for _, candidate := range strings.Split(bases, ",") {
			if _, ok := run[candidate]; ok {
				base = candidate
				break
			}
		}
		b, ok := run[base]
		if ok && b > 0 {
			for impl, ns := range run {
				if impl == base {
					continue
				}
				k := key{bench, impl}
				if _, seen := ratios[k]; !seen {
					order = append(order, k)
				}
				ratios[k] = append(ratios[k], ns/b)
			}
		}
		delete(current, bench)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || f[3] != "ns/op" {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i] // drop the GOMAXPROCS suffix
		}
		bench, impl, ok := strings.Cut(name, "/impl=")
		if !ok {
			continue
		}
		ns, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return fmt.Errorf("%s: %w", f[0], err)
		}
		if _, dup := current[bench][impl]; dup {
			flush(bench) // a new run of this benchmark begins
		}
		if current[bench] == nil {
			current[bench] = map[string]float64{}
		}
		if !slices.Contains(benches, bench) {
			benches = append(benches, bench)
		}
		current[bench][impl] = ns
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for bench := range current {
		flush(bench)
	}
	slices.SortStableFunc(order, func(a, b key) int {
		if a.bench != b.bench {
			return slices.Index(benches, a.bench) - slices.Index(benches, b.bench)
		}
		return strings.Compare(a.impl, b.impl)
	})
	if len(order) == 0 {
		return fmt.Errorf("no benchmarks named Name/impl=X with a %q impl", bases)
	}
	fmt.Fprintf(out, "%-28s %-8s %8s %8s %8s %4s\n", "benchmark", "impl", "median", "min", "max", "runs")
	medians := map[string]float64{}
	for _, k := range order {
		r := slices.Clone(ratios[k])
		slices.Sort(r)
		name := strings.TrimPrefix(k.bench, "Benchmark")
		medians[name+"/"+k.impl] = median(r)
		fmt.Fprintf(out, "%-28s %-8s %7.3fx %7.3fx %7.3fx %4d\n", name, k.impl, median(r), r[0], r[len(r)-1], len(r))
	}
	return checkGoals(out, goals, medians)
}

// checkGoals reports each goal of goals ("Bench/impl<=ratio,...") against
// the medians, and fails if one is missed or has no samples.
func checkGoals(out io.Writer, goals string, medians map[string]float64) error {
	missed := 0
	for _, goal := range strings.Split(goals, ",") {
		if goal = strings.TrimSpace(goal); goal == "" {
			continue
		}
		name, limit, ok := strings.Cut(goal, "<=")
		bound, err := strconv.ParseFloat(limit, 64)
		if !ok || err != nil {
			return fmt.Errorf("goal %q: want Bench/impl<=ratio", goal)
		}
		got, ok := medians[name]
		switch {
		case !ok:
			fmt.Fprintf(out, "goal %s <= %.2fx: no samples\n", name, bound)
			missed++
		case got > bound:
			fmt.Fprintf(out, "goal %s <= %.2fx: MISSED, median %.3fx\n", name, bound, got)
			missed++
		default:
			fmt.Fprintf(out, "goal %s <= %.2fx: met, median %.3fx\n", name, bound, got)
		}
	}
	if missed > 0 {
		return fmt.Errorf("%d goal(s) missed", missed)
	}
	return nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
