package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// otlpReceiver is an OTLP/HTTP endpoint inside the test: it takes what an
// exporter POSTs to /v1/traces and /v1/metrics and decodes it with the
// OpenTelemetry Collector's own pdata, as a collector's OTLP receiver does.
// What it holds is what a backend would get, not the SDK's in-memory view
// of it.
type otlpReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	traces   []ptrace.Traces
	metrics  []pmetric.Metrics
	bodies   [][]byte // every request body as decoded, decompressed: for the search for secrets
	encoding []string // every request's Content-Encoding
	errs     []error  // requests it could not take
}

// newOTLPReceiver starts a receiver, stopped when the test ends.
func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", receive(r, ptraceotlp.NewExportRequest, ptraceotlp.ExportRequest.Traces, &r.traces,
		ptraceotlp.NewExportResponse().MarshalProto))
	mux.HandleFunc("POST /v1/metrics", receive(r, pmetricotlp.NewExportRequest, pmetricotlp.ExportRequest.Metrics, &r.metrics,
		pmetricotlp.NewExportResponse().MarshalProto))
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.fail(w, fmt.Errorf("unexpected %s %s", req.Method, req.URL.Path))
	})
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

// receive handles the exports of one signal: it decodes each body into a
// request newReq makes, keeps what the request holds in *kept, and answers
// with the protobuf response resp marshals.
func receive[Req interface{ UnmarshalProto([]byte) error }, T any](r *otlpReceiver, newReq func() Req, held func(Req) T, kept *[]T,
	resp func() ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		body, ok := r.body(w, req)
		if !ok {
			return
		}
		in := newReq()
		if err := in.UnmarshalProto(body); err != nil {
			r.fail(w, fmt.Errorf("%s: %w", req.URL.Path, err))
			return
		}
		out, err := resp()
		if err != nil {
			r.fail(w, fmt.Errorf("%s: response: %w", req.URL.Path, err))
			return
		}
		r.mu.Lock()
		*kept = append(*kept, held(in))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}
}

// body reads a request's body, gunzipped when the exporter compressed it.
func (r *otlpReceiver) body(w http.ResponseWriter, req *http.Request) ([]byte, bool) {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.fail(w, fmt.Errorf("%s: Content-Type %q, want application/x-protobuf", req.URL.Path, ct))
		return nil, false
	}
	var in io.Reader = req.Body
	enc := req.Header.Get("Content-Encoding")
	switch enc {
	case "":
	case "gzip":
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			r.fail(w, fmt.Errorf("%s: gzip: %w", req.URL.Path, err))
			return nil, false
		}
		in = gz
	default:
		r.fail(w, fmt.Errorf("%s: Content-Encoding %q", req.URL.Path, enc))
		return nil, false
	}
	body, err := io.ReadAll(in)
	if err != nil {
		r.fail(w, fmt.Errorf("%s: %w", req.URL.Path, err))
		return nil, false
	}
	r.mu.Lock()
	r.bodies = append(r.bodies, body)
	r.encoding = append(r.encoding, enc)
	r.mu.Unlock()
	return body, true
}

func (r *otlpReceiver) fail(w http.ResponseWriter, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// otlpScope is an instrumentation scope as exported.
type otlpScope struct{ Name, Version, SchemaURL string }

// otlpSpan is one exported span, flattened.
type otlpSpan struct {
	Scope                     otlpScope
	Resource                  map[string]any
	TraceID, SpanID, ParentID string // hex; ParentID "" for a root
	Name                      string
	Kind                      ptrace.SpanKind
	Start, End                time.Time
	Status                    ptrace.StatusCode
	StatusMessage             string
	Attrs                     map[string]any // string, int64, float64, bool, []any
	Events                    []otlpEvent
}

type otlpEvent struct {
	Name  string
	Attrs map[string]any
}

// otlpMetric is one exported metric, flattened.
type otlpMetric struct {
	Scope       otlpScope
	Resource    map[string]any
	Name, Unit  string
	Description string
	Type        pmetric.MetricType
	Monotonic   bool // a Sum's
	Temporality pmetric.AggregationTemporality
	Points      []otlpPoint
}

type otlpPoint struct {
	Attrs        map[string]any
	Value        float64 // a Sum's or Gauge's value, a Histogram's sum
	Count        uint64  // a Histogram's
	Bounds       []float64
	BucketCounts []uint64
	Exemplars    []string // the span IDs the exemplars point at
}

// spans returns every span received, in the order received.
func (r *otlpReceiver) spans() []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpSpan
	for _, td := range r.traces {
		for _, rs := range td.ResourceSpans().All() {
			res := rs.Resource().Attributes().AsRaw()
			for _, ss := range rs.ScopeSpans().All() {
				scope := otlpScope{ss.Scope().Name(), ss.Scope().Version(), ss.SchemaUrl()}
				for _, s := range ss.Spans().All() {
					sp := otlpSpan{
						Scope: scope, Resource: res, Name: s.Name(), Kind: s.Kind(),
						TraceID: s.TraceID().String(), SpanID: s.SpanID().String(),
						Start: s.StartTimestamp().AsTime(), End: s.EndTimestamp().AsTime(),
						Status: s.Status().Code(), StatusMessage: s.Status().Message(),
						Attrs: s.Attributes().AsRaw(),
					}
					if !s.ParentSpanID().IsEmpty() {
						sp.ParentID = s.ParentSpanID().String()
					}
					for _, e := range s.Events().All() {
						sp.Events = append(sp.Events, otlpEvent{e.Name(), e.Attributes().AsRaw()})
					}
					out = append(out, sp)
				}
			}
		}
	}
	return out
}

// lastMetrics returns the metrics of the last export, by name: with
// cumulative temporality the last export holds every series, and the pool's
// current state.
func (r *otlpReceiver) lastMetrics() map[string]otlpMetric {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]otlpMetric{}
	if len(r.metrics) == 0 {
		return out
	}
	md := r.metrics[len(r.metrics)-1]
	for _, rm := range md.ResourceMetrics().All() {
		res := rm.Resource().Attributes().AsRaw()
		for _, sm := range rm.ScopeMetrics().All() {
			scope := otlpScope{sm.Scope().Name(), sm.Scope().Version(), sm.SchemaUrl()}
			for _, m := range sm.Metrics().All() {
				om := otlpMetric{Scope: scope, Resource: res, Name: m.Name(), Unit: m.Unit(), Description: m.Description(), Type: m.Type()}
				switch m.Type() {
				case pmetric.MetricTypeSum:
					om.Monotonic, om.Temporality = m.Sum().IsMonotonic(), m.Sum().AggregationTemporality()
					for _, p := range m.Sum().DataPoints().All() {
						om.Points = append(om.Points, otlpPoint{Attrs: p.Attributes().AsRaw(), Value: numberValue(p)})
					}
				case pmetric.MetricTypeGauge:
					for _, p := range m.Gauge().DataPoints().All() {
						om.Points = append(om.Points, otlpPoint{Attrs: p.Attributes().AsRaw(), Value: numberValue(p)})
					}
				case pmetric.MetricTypeHistogram:
					om.Temporality = m.Histogram().AggregationTemporality()
					for _, p := range m.Histogram().DataPoints().All() {
						pt := otlpPoint{Attrs: p.Attributes().AsRaw(), Value: p.Sum(), Count: p.Count(),
							Bounds: p.ExplicitBounds().AsRaw(), BucketCounts: p.BucketCounts().AsRaw()}
						for _, e := range p.Exemplars().All() {
							pt.Exemplars = append(pt.Exemplars, e.SpanID().String())
						}
						om.Points = append(om.Points, pt)
					}
				}
				out[m.Name()] = om
			}
		}
	}
	return out
}

func numberValue(p pmetric.NumberDataPoint) float64 {
	if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(p.IntValue())
	}
	return p.DoubleValue()
}

// received returns every request body received, decompressed, their
// Content-Encodings, and the requests the receiver refused.
func (r *otlpReceiver) received() (bodies [][]byte, encodings []string, errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bodies), slices.Clone(r.encoding), slices.Clone(r.errs)
}

// contains reports whether body holds s, and the bytes around it.
func contains(body []byte, s string) (string, bool) {
	i := bytes.Index(body, []byte(s))
	if i < 0 {
		return "", false
	}
	lo, hi := max(i-60, 0), min(i+len(s)+60, len(body))
	return fmt.Sprintf("%q", body[lo:hi]), true
}
