package h2

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// fieldsHeader keeps every value in order under its canonical name, and a slice it
// returns can be appended to without changing another field's value (the values
// share one backing array).
func TestFieldsHeader(t *testing.T) {
	fields := []hpack.HeaderField{
		{Name: "content-type", Value: "text/plain"},
		{Name: "x-a", Value: "1"},
		{Name: "x-b", Value: "b"},
		{Name: "x-a", Value: "2"},
		{Name: "date", Value: "today"},
	}
	h := fieldsHeader(fields)
	want := http.Header{"Content-Type": {"text/plain"}, "X-A": {"1", "2"}, "X-B": {"b"}, "Date": {"today"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("fieldsHeader = %v, want %v", h, want)
	}
	h.Add("Content-Type", "appended")
	h["X-B"] = append(h["X-B"], "appended")
	if got := h["X-A"]; !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Fatalf("X-A after appending to its neighbours: %q", got)
	}
	if got := h["Date"]; !reflect.DeepEqual(got, []string{"today"}) {
		t.Fatalf("Date after appending to its neighbours: %q", got)
	}
	// The map (its header and its table) and one array for all the values, however
	// many fields (names net/textproto knows are not copied to canonicalise them).
	common := []hpack.HeaderField{{Name: "content-type", Value: "a"}, {Name: "date", Value: "b"},
		{Name: "cache-control", Value: "c"}, {Name: "content-length", Value: "1"}, {Name: "server", Value: "d"}}
	if n := testing.AllocsPerRun(100, func() { _ = fieldsHeader(common) }); n > 3 {
		t.Fatalf("%.0f allocations for %d distinct fields, want at most 3", n, len(common))
	}
}

// Every name commonLower knows maps to its lower-case form (or to "" for the fields
// HTTP/2 forbids) and costs no allocation; other names are lower-cased anew.
func TestLowerHeader(t *testing.T) {
	for k, want := range commonLower {
		lk, ok := lowerHeader(k)
		if want == "" {
			if ok {
				t.Errorf("lowerHeader(%q) = %q, true; want a connection-specific field refused", k, lk)
			}
			continue
		}
		if !ok || lk != strings.ToLower(k) {
			t.Errorf("lowerHeader(%q) = %q, %v; want %q", k, lk, ok, strings.ToLower(k))
		}
		if n := testing.AllocsPerRun(10, func() { _, _ = lowerHeader(k) }); n != 0 {
			t.Errorf("lowerHeader(%q): %.0f allocations, want 0", k, n)
		}
	}
	if lk, ok := lowerHeader("X-Custom-Thing"); !ok || lk != "x-custom-thing" {
		t.Errorf("lowerHeader(X-Custom-Thing) = %q, %v", lk, ok)
	}
	if _, ok := lowerHeader(http.TrailerPrefix + "Grpc-Status"); ok {
		t.Error("a trailer announced by prefix was sent as a header")
	}
}

// A pooled chunk comes back and goes again without an allocation; a grown one is not
// pooled.
func TestChunkPool(t *testing.T) {
	putChunk(getChunk()) // fill the pool
	if n := testing.AllocsPerRun(100, func() {
		b := getChunk()
		b = append(b, "data"...)
		putChunk(b)
	}); n != 0 {
		t.Fatalf("%.1f allocations per get and put, want 0", n)
	}
	grown := append(getChunk(), make([]byte, chunkSize+1)...)
	putChunk(grown)
	if b := getChunk(); cap(b) != chunkSize || len(b) != 0 {
		t.Fatalf("getChunk gave len %d cap %d, want 0 and %d", len(b), cap(b), chunkSize)
	}
}
