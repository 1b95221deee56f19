package h1

import (
	"bufio"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// writeFields writes header or trailer fields, except those in skip. Names that are
// not tokens and trailer placeholders (http.TrailerPrefix) are left out; CR and LF in
// values become spaces, as net/http writes them.
func writeFields(bw *bufio.Writer, h http.Header, skip map[string]bool) {
	for k, vs := range h {
		if skip[k] || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
}

// writeField writes one field line.
func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// httpDate is the Date field's value for now, formatted once per second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.value
	}
	d := &cachedDate{sec: now.Unix(), value: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.value
}

type cachedDate struct {
	sec   int64
	value string
}

var dateCache atomic.Pointer[cachedDate]
