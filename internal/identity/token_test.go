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

package identity

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func testJWT(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." +
		base64.RawURLEncoding.EncodeToString([]byte("sig"))
}

func TestCheckToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	es := map[string]any{"alg": "ES256"}
	valid := func(edit func(map[string]any)) string {
		c := map[string]any{"iss": "https://kubernetes.default.svc", "aud": []string{"other", Audience}, "exp": now.Unix() + 600, "nbf": now.Unix() - 5,
			"kubernetes.io": map[string]any{"namespace": "shop", "pod": map[string]any{"name": "web-1", "uid": "u"}}}
		if edit != nil {
			edit(c)
		}
		return testJWT(es, c)
	}
	cases := []struct {
		name   string
		token  string
		reason string
	}{
		{"valid, aud as array, pod-bound", valid(nil), ""},
		{"valid, aud as string", valid(func(c map[string]any) { c["aud"] = Audience }), ""},
		{"exp within the skew", valid(func(c map[string]any) { c["exp"] = now.Unix() - 10 }), ""},
		{"fractional exp", valid(func(c map[string]any) { c["exp"] = float64(now.Unix()) + 0.5 + 600 }), ""},
		{"two segments", "a.b", ReasonTokenMalformed},
		{"empty signature", strings.TrimSuffix(valid(nil), "c2ln"), ReasonTokenMalformed},
		{"header not base64url", "***." + strings.SplitN(valid(nil), ".", 2)[1], ReasonTokenMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + strings.SplitN(valid(nil), ".", 2)[1], ReasonTokenMalformed},
		{"alg none", testJWT(map[string]any{"alg": "none"}, map[string]any{"iss": "x", "aud": Audience, "exp": now.Unix() + 60}), ReasonTokenMalformed},
		{"claims not JSON", strings.Split(valid(nil), ".")[0] + ".bm90IGpzb24." + "c2ln", ReasonTokenMalformed},
		{"no issuer", valid(func(c map[string]any) { delete(c, "iss") }), ReasonTokenMalformed},
		{"aud neither string nor list", valid(func(c map[string]any) { c["aud"] = 7 }), ReasonTokenMalformed},
		{"wrong audience", valid(func(c map[string]any) { c["aud"] = "vault" }), ReasonTokenAudience},
		{"no audience", valid(func(c map[string]any) { delete(c, "aud") }), ReasonTokenAudience},
		{"no exp", valid(func(c map[string]any) { delete(c, "exp") }), ReasonTokenExpired},
		{"exp not a number", valid(func(c map[string]any) { c["exp"] = "tomorrow" }), ReasonTokenMalformed},
		{"expired", valid(func(c map[string]any) { c["exp"] = now.Unix() - 60 }), ReasonTokenExpired},
		{"not yet valid", valid(func(c map[string]any) { c["nbf"] = now.Unix() + 60 }), ReasonTokenExpired},
		{"too long", strings.Repeat("a", maxTokenBytes+1), ReasonTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims, exp, rej := checkToken(tc.token, Audience, now)
			if tc.reason == "" {
				if rej != nil {
					t.Fatalf("refused: %s %s", rej.reason, rej.msg)
				}
				if exp.IsZero() || claims.Issuer == "" {
					t.Errorf("claims %+v exp %v", claims, exp)
				}
				return
			}
			if rej == nil || rej.reason != tc.reason {
				t.Fatalf("got %+v, want reason %s", rej, tc.reason)
			}
		})
	}
	claims, _, _ := checkToken(valid(nil), Audience, now)
	if got := claims.pod(); got != "shop/web-1" {
		t.Errorf("pod binding = %q, want shop/web-1", got)
	}
}

func TestReviewCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newReviewCache(100, 5*time.Minute)
	c.put("t1", reviewed{namespace: "ns", serviceAccount: "sa"}, now.Add(time.Hour), now)
	if r, ok := c.get("t1", now.Add(4*time.Minute)); !ok || r.serviceAccount != "sa" {
		t.Fatalf("cached review not found within maxAge")
	}
	if _, ok := c.get("t1", now.Add(5*time.Minute)); ok {
		t.Errorf("a review was reused past maxAge")
	}
	c.put("t2", reviewed{}, now.Add(time.Minute), now)
	if _, ok := c.get("t2", now.Add(time.Minute)); ok {
		t.Errorf("a review was reused past the token's expiry")
	}
	for i := range 10_000 {
		c.put(fmt.Sprint(i), reviewed{}, now.Add(time.Hour), now)
	}
	if n := c.len(); n > 100 {
		t.Errorf("cache holds %d entries, bound 100", n)
	}
}

func TestPeerLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := newPeerLimiter(1, 3, 10)
	for i := range 3 {
		if !p.allow("10.0.0.1", now) {
			t.Fatalf("call %d within the burst refused", i)
		}
	}
	if p.allow("10.0.0.1", now) {
		t.Fatalf("a call beyond the burst was allowed")
	}
	if !p.allow("10.0.0.2", now) {
		t.Fatalf("another peer is limited by the first")
	}
	if !p.allow("10.0.0.1", now.Add(time.Second)) {
		t.Fatalf("the bucket did not refill at the rate")
	}
	// 10,000 peers: the table stays bounded, and a busy peer seen recently is not the
	// one evicted first.
	for i := range 10_000 {
		p.allow(fmt.Sprintf("10.1.%d.%d", i/256, i%256), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := p.len(); n > 10 {
		t.Errorf("limiter table holds %d peers, bound 10", n)
	}
}
