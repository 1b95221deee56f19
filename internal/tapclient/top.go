/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package tapclient

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/proxy/api"
)

// maxTopRows bounds the distinct paths `weft top` keeps (a scan of random paths would
// otherwise grow it without end); beyond it, new paths are counted in Other.
const maxTopRows = 5000

// TopRow is one path's figures: requests that ended, how many succeeded (no error,
// HTTP status below 500, gRPC status OK when there is one), and the latency to the
// response head.
type TopRow struct {
	Method, Authority, Path string
	Count, Success          uint64
	Best, Worst, Last       time.Duration
}

type topKey struct{ method, authority, path string }

// Top aggregates events into the hottest paths.
type Top struct {
	t       tracker
	rows    map[topKey]*TopRow
	Other   uint64 // requests of paths beyond maxTopRows
	Dropped uint64 // events the proxies or the tap API dropped (rate bound)
}

// Add counts one event.
func (tp *Top) Add(ev *api.TapEvent) {
	tp.Dropped += ev.GetDropped()
	if ev.GetEvent() == nil {
		return // a report of drops alone
	}
	k := keyOf(ev)
	r := tp.t.get(k)
	switch e := ev.GetEvent().(type) {
	case *api.TapEvent_RequestInit:
		r.init = e.RequestInit
	case *api.TapEvent_ResponseInit:
		r.status = e.ResponseInit.GetHttpStatus()
		r.rsp = e.ResponseInit.GetSinceRequestInit().AsDuration()
	case *api.TapEvent_ResponseEnd:
		defer tp.t.done(k)
		if r.init == nil {
			return // its request event was dropped
		}
		if tp.rows == nil {
			tp.rows = map[topKey]*TopRow{}
		}
		key := topKey{r.init.GetMethod(), r.init.GetAuthority(), r.init.GetPath()}
		row, ok := tp.rows[key]
		if !ok {
			if len(tp.rows) >= maxTopRows {
				tp.Other++
				return
			}
			row = &TopRow{Method: key.method, Authority: key.authority, Path: key.path}
			tp.rows[key] = row
		}
		end := e.ResponseEnd
		row.Count++
		if end.GetError() == "" && r.status != 0 && r.status < 500 && (end.GrpcStatus == nil || end.GetGrpcStatus() == 0) {
			row.Success++
		}
		lat := r.rsp
		if lat == 0 {
			lat = end.GetSinceRequestInit().AsDuration()
		}
		if row.Count == 1 || lat < row.Best {
			row.Best = lat
		}
		row.Worst = max(row.Worst, lat)
		row.Last = lat
	}
}

// Rows returns at most n rows (all when n <= 0), the most requested first.
func (tp *Top) Rows(n int) []TopRow {
	out := make([]TopRow, 0, len(tp.rows))
	for _, r := range tp.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b TopRow) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Authority, b.Authority), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// WriteTable prints rows as `weft top` does.
func (tp *Top) WriteTable(w io.Writer, n int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tAUTHORITY\tPATH\tCOUNT\tSUCCESS\tBEST\tWORST\tLAST")
	for _, r := range tp.Rows(n) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Method, r.Authority, r.Path, r.Count,
			successRate(r), ms(r.Best), ms(r.Worst), ms(r.Last))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if tp.Other > 0 || tp.Dropped > 0 {
		_, err := fmt.Fprintf(w, "(%d requests of further paths not shown; %d events dropped by the rate bound)\n", tp.Other, tp.Dropped)
		return err
	}
	return nil
}

func successRate(r TopRow) string {
	if r.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(r.Success)/float64(r.Count))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}
