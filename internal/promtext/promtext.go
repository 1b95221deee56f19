// Package promtext is the one writer of the Prometheus text exposition format (0.0.4)
// in Weft, and the home of its metric naming rule.
//
// Why hand-written: the proxy does not link client_golang (its registry, descriptors
// and per-series objects cost memory a 20 MB proxy does not have, and its series are
// kept in atomics it already owns); it needs only to print. Three printers had grown,
// with two label escapers and three naming conventions. Every metric of the proxy now
// goes through Writer.
//
// The naming rule: a series that the Linkerd proxy also exports keeps Linkerd's name
// verbatim, so dashboards and alerts carry over (LinkerdNames lists them, with the
// standard process_* names); every other series is Weft's own and starts with "weft_".
// Writer.Family refuses any other name: the exposition fails (Flush returns the error),
// so a test that scrapes catches a misnamed series the first time it runs.
//
// It imports only the standard library.
package promtext

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ContentType is the Content-Type of an exposition this package writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a metric family's type.
type Type string

const (
	Counter   Type = "counter"
	Gauge     Type = "gauge"
	Histogram Type = "histogram"
)

// LinkerdNames are the series names Weft shares with the Linkerd proxy (its proxy
// metrics reference) and the process_* names of Prometheus' client libraries, which the
// Linkerd proxy exports too. Nothing else may go without the weft_ prefix.
var LinkerdNames = map[string]bool{
	"request_total":                              true,
	"response_total":                             true,
	"response_latency_ms":                        true,
	"route_request_total":                        true,
	"route_response_total":                       true,
	"route_response_latency_ms":                  true,
	"route_actual_request_total":                 true,
	"route_actual_response_total":                true,
	"route_actual_response_latency_ms":           true,
	"tcp_open_total":                             true,
	"tcp_close_total":                            true,
	"tcp_open_connections":                       true,
	"tcp_read_bytes_total":                       true,
	"tcp_write_bytes_total":                      true,
	"identity_cert_expiration_timestamp_seconds": true,
	"inbound_http_authz_allow_total":             true,
	"inbound_http_authz_deny_total":              true,
	"inbound_http_route_not_found_total":         true,
	"inbound_tcp_authz_allow_total":              true,
	"inbound_tcp_authz_deny_total":               true,
	"inbound_tcp_authz_terminate_total":          true,
	"process_start_time_seconds":                 true,
	"process_cpu_seconds_total":                  true,
	"process_resident_memory_bytes":              true,
}

// CheckName applies the naming rule to a family name.
func CheckName(name string) error {
	if !validName(name) {
		return fmt.Errorf("metric name %q is not a valid Prometheus name", name)
	}
	if LinkerdNames[name] || strings.HasPrefix(name, "weft_") {
		return nil
	}
	return fmt.Errorf("metric %q is neither a Linkerd proxy name nor weft_*: Weft-only series are named weft_<...>", name)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// Labels is a rendered label set, name="value" pairs joined by commas, values escaped.
// Rendering once per series and reusing it for each of the series' lines is what keeps
// a scrape of thousands of series cheap.
type Labels string

// L renders name, value pairs. Label names are the caller's constants; values may be
// anything (authorities and identities come from peers) and are escaped.
func L(pairs ...string) Labels {
	return Labels("").With(pairs...)
}

// With is l with more name, value pairs appended.
func (l Labels) With(pairs ...string) Labels {
	if len(pairs)%2 != 0 {
		panic("promtext: odd number of label arguments")
	}
	var b strings.Builder
	b.WriteString(string(l))
	for i := 0; i < len(pairs); i += 2 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteString(`="`)
		b.WriteString(EscapeLabelValue(pairs[i+1]))
		b.WriteByte('"')
	}
	return Labels(b.String())
}

// EscapeLabelValue escapes a label value as the exposition format requires: backslash,
// double quote and line feed.
func EscapeLabelValue(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return labelEscaper.Replace(s)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// escapeHelp escapes HELP text: backslash and line feed (a quote is literal there).
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// Writer writes an exposition. It buffers; Flush ends it and reports the first error,
// a write failure or a misnamed family. It is also an io.Writer, so that a collector
// written against io.Writer can be handed the same stream (NewWriter of a *Writer is
// that Writer).
type Writer struct {
	b   *bufio.Writer
	err error
	num []byte
}

// NewWriter writes to w.
func NewWriter(w io.Writer) *Writer {
	if pw, ok := w.(*Writer); ok {
		return pw
	}
	return &Writer{b: bufio.NewWriter(w)}
}

// Write writes p as it is (lines the caller formatted itself).
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.b.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// Flush writes what is buffered and returns the first error of the exposition.
func (w *Writer) Flush() error {
	if err := w.b.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// Family starts a metric family: its HELP and TYPE lines. The name must follow the
// naming rule (CheckName); if not, the family is still written and Flush fails.
func (w *Writer) Family(name string, typ Type, help string) {
	if err := CheckName(name); err != nil && w.err == nil {
		w.err = err
	}
	w.str("# HELP ")
	w.str(name)
	w.b.WriteByte(' ')
	w.str(helpEscaper.Replace(help))
	w.str("\n# TYPE ")
	w.str(name)
	w.b.WriteByte(' ')
	w.str(string(typ))
	w.b.WriteByte('\n')
}

// Uint writes one sample with an unsigned integer value.
func (w *Writer) Uint(name string, labels Labels, v uint64) {
	w.head(name, labels)
	w.num = strconv.AppendUint(w.num[:0], v, 10)
	w.tail()
}

// Int writes one sample with a signed integer value.
func (w *Writer) Int(name string, labels Labels, v int64) {
	w.head(name, labels)
	w.num = strconv.AppendInt(w.num[:0], v, 10)
	w.tail()
}

// Float writes one sample with a float value (NaN and ±Inf as the format spells them).
func (w *Writer) Float(name string, labels Labels, v float64) {
	w.head(name, labels)
	w.num = appendFloat(w.num[:0], v)
	w.tail()
}

// Histogram writes one histogram series: a cumulative _bucket per upper bound, the
// +Inf bucket (which is count), _sum and _count. counts holds the per-bucket counts
// (not cumulative), one per bound and a last one for the values above every bound.
func (w *Writer) Histogram(name string, labels Labels, bounds []float64, counts []uint64, sum float64) {
	if len(counts) != len(bounds)+1 {
		if w.err == nil {
			w.err = errors.New("promtext: histogram " + name + " has " + strconv.Itoa(len(counts)) + " counts for " + strconv.Itoa(len(bounds)) + " bounds")
		}
		return
	}
	bucket := name + "_bucket"
	var cum uint64
	for i, le := range bounds {
		cum += counts[i]
		w.Uint(bucket, labels.With("le", string(appendFloat(nil, le))), cum)
	}
	cum += counts[len(bounds)]
	w.Uint(bucket, labels.With("le", "+Inf"), cum)
	w.Float(name+"_sum", labels, sum)
	w.Uint(name+"_count", labels, cum)
}

func (w *Writer) head(name string, labels Labels) {
	w.str(name)
	if labels != "" {
		w.b.WriteByte('{')
		w.str(string(labels))
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
}

func (w *Writer) tail() {
	w.num = append(w.num, '\n')
	w.Write(w.num)
}

func (w *Writer) str(s string) {
	if _, err := w.b.WriteString(s); err != nil && w.err == nil {
		w.err = err
	}
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}
