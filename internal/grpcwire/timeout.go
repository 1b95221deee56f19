package grpcwire

import (
	"math"
	"strconv"
	"time"
)

// ParseTimeout reads a grpc-timeout value: 1 to 8 digits and a unit, H, M, S, m, u or n
// (TimeoutValue and TimeoutUnit in the specification). ok is false for anything else,
// and the caller then applies no deadline from the header.
func ParseTimeout(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	// 8 digits of hours (99999999H, 11,000 years) overflow an int64 of nanoseconds
	// (292 years): such a deadline is as good as none, so it saturates.
	if n > math.MaxInt64/int64(unit) {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(n) * unit, true
}

// FormatTimeout writes d as a grpc-timeout value in the finest unit whose count fits the
// specification's 8 digits, rounding up so that a callee never sees a shorter deadline
// than the caller's. A d of zero or less is "0n": the deadline has passed.
func FormatTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	const maxValue = 99999999
	units := []struct {
		d time.Duration
		c byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}}
	for _, u := range units {
		n := d / u.d
		if d%u.d != 0 {
			n++
		}
		if n <= maxValue {
			return strconv.FormatInt(int64(n), 10) + string(u.c)
		}
	}
	return strconv.Itoa(maxValue) + "H"
}
