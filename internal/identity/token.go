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
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Limits of the local token checks.
const (
	// maxTokenBytes bounds a token. Projected ServiceAccount tokens are about 1 KiB;
	// the API server's own limit for a bearer token is far larger, but nothing a kubelet
	// mints comes near this.
	maxTokenBytes = 8 << 10
	// tokenSkew is the clock skew allowed on exp and nbf: the API server allows none
	// on exp, so a token this service accepts locally and the API server then refuses
	// costs one review, never a wrong answer.
	tokenSkew = 30 * time.Second
)

// tokenClaims are the claims of a ServiceAccount token that the local checks read
// (RFC 7519 section 4.1, and the kubernetes.io private claim of bound tokens). They are
// NOT verified here: only TokenReview verifies the signature, so nothing decided from
// them grants anything; they only refuse early what the API server would refuse.
type tokenClaims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  audience     `json:"aud"`
	Expiry    *json.Number `json:"exp"`
	NotBefore *json.Number `json:"nbf"`
	// Kubernetes is the binding of a projected token: which pod asked for it.
	Kubernetes *struct {
		Namespace string `json:"namespace"`
		Pod       *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// audience is the aud claim: a string or an array of strings (RFC 7519 section 4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// pod returns "namespace/name" of the pod the token is bound to, or "".
func (c *tokenClaims) pod() string {
	if c.Kubernetes == nil || c.Kubernetes.Pod == nil {
		return ""
	}
	return c.Kubernetes.Namespace + "/" + c.Kubernetes.Pod.Name
}

// numericDate reads a NumericDate (RFC 7519 section 2: seconds since the epoch, may
// be fractional).
func numericDate(n *json.Number) (time.Time, bool) {
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// checkToken is what can be said of a token without the API server: it is a compact
// JWS (RFC 7515 section 7.1: three base64url segments) whose header and claims are JSON,
// signed with some algorithm, issued by someone, for audience aud, and valid at now
// (exp and nbf, RFC 7519 sections 4.1.4-5, with tokenSkew). Anything else is refused
// here at no cost to the API server. It returns the claims and the token's expiry, or a
// rejection whose reason is a metric label and whose message goes to the log only.
func checkToken(token, aud string, now time.Time) (*tokenClaims, time.Time, *rejection) {
	if len(token) > maxTokenBytes {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the token is %d bytes, more than %d", len(token), maxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the token is not a JWT (three non-empty base64url segments)")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the JWT header is not base64url: %v", err)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the JWT header is not JSON: %v", err)
	}
	if header.Alg == "" || strings.EqualFold(header.Alg, "none") {
		// An unsigned JWT (RFC 7519 section 6) is never a ServiceAccount token.
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the JWT is unsigned (alg %q)", header.Alg)
	}
	if _, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the JWT signature is not base64url: %v", err)
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the JWT claims are not base64url: %v", err)
	}
	var claims tokenClaims
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the JWT claims are not JSON: %v", err)
	}
	if claims.Issuer == "" {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the token has no issuer (iss)")
	}
	found := false
	for _, a := range claims.Audience {
		found = found || a == aud
	}
	if !found {
		return nil, time.Time{}, reject(ReasonTokenAudience, "the token is for audience %v, not %s", []string(claims.Audience), aud)
	}
	if claims.Expiry == nil {
		// Projected tokens always expire; a token without exp is a legacy Secret token,
		// which has no audience either and never gets here.
		return nil, time.Time{}, reject(ReasonTokenExpired, "the token has no expiry (exp)")
	}
	exp, ok := numericDate(claims.Expiry)
	if !ok {
		return nil, time.Time{}, reject(ReasonTokenMalformed, "the token's exp %q is not a NumericDate", claims.Expiry.String())
	}
	if !now.Before(exp.Add(tokenSkew)) {
		return nil, time.Time{}, reject(ReasonTokenExpired, "the token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if claims.NotBefore != nil {
		nbf, ok := numericDate(claims.NotBefore)
		if !ok {
			return nil, time.Time{}, reject(ReasonTokenMalformed, "the token's nbf %q is not a NumericDate", claims.NotBefore.String())
		}
		if now.Add(tokenSkew).Before(nbf) {
			return nil, time.Time{}, reject(ReasonTokenExpired, "the token is not valid before %s", nbf.UTC().Format(time.RFC3339))
		}
	}
	return &claims, exp, nil
}

// reviewed is the outcome of a successful TokenReview.
type reviewed struct {
	namespace, serviceAccount string
	until                     time.Time
}

// reviewCache remembers successful TokenReviews by the SHA-256 of the token until the
// token expires, but at most maxAge, so that a proxy that retries (or restarts) within
// its token's life costs one review, not one per call. A token whose ServiceAccount or
// pod is deleted stays accepted for at most maxAge: the identity it gets is the one it
// had a moment ago, for at most one workload lifetime. Failed reviews are not cached:
// the rate limits bound them. At most size entries: when full, expired entries go
// first, then an arbitrary one (map order), which at worst costs that token one more
// review.
type reviewCache struct {
	size   int
	maxAge time.Duration

	mu      sync.Mutex
	entries map[[sha256.Size]byte]reviewed
}

func newReviewCache(size int, maxAge time.Duration) *reviewCache {
	return &reviewCache{size: size, maxAge: maxAge, entries: map[[sha256.Size]byte]reviewed{}}
}

func (c *reviewCache) get(token string, now time.Time) (reviewed, bool) {
	if c.size <= 0 {
		return reviewed{}, false
	}
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.entries[k]
	if !ok {
		return reviewed{}, false
	}
	if !now.Before(r.until) {
		delete(c.entries, k)
		return reviewed{}, false
	}
	return r, true
}

func (c *reviewCache) put(token string, r reviewed, tokenExpiry, now time.Time) {
	if c.size <= 0 {
		return
	}
	r.until = now.Add(c.maxAge)
	if tokenExpiry.Before(r.until) {
		r.until = tokenExpiry
	}
	if !now.Before(r.until) {
		return
	}
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		for ek, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, ek)
			}
		}
		for ek := range c.entries {
			if len(c.entries) < c.size {
				break
			}
			delete(c.entries, ek)
		}
	}
	c.entries[k] = r
}

func (c *reviewCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
