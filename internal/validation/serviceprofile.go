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

// Package validation checks what the CRD schemas cannot express, with field.ErrorList
// errors that name the field. It is the one home of these rules: the reconcilers report
// the result in status conditions and the validating webhooks reject with it, so both say
// the same thing, and the webhooks keep only admission plumbing (decoding, reading the
// cluster, turning errors into responses). Every function here is pure: what it needs
// from the cluster (other objects, the cluster domain) is passed in, so the rules are
// tested by table in milliseconds, without an API server.
package validation

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/iptables"
)

// ServiceProfile checks what the CRD schema cannot: conditions below the first level
// (their shape, depth and size, see meshv1alpha1.RequestMatch), that regular
// expressions compile, durations parse, opaque ports are ports, and override weights
// are usable.
func ServiceProfile(sp *meshv1alpha1.ServiceProfile) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	budget := &profileBudget{}
	for i, rt := range sp.Spec.Routes {
		p := spec.Child("routes").Index(i)
		w := conditionWalk{budget: budget}
		errs = append(errs, w.request(p.Child("condition"), &rt.Condition, 1)...)
		for j := range rt.ResponseClasses {
			w := conditionWalk{budget: budget}
			errs = append(errs, w.response(p.Child("responseClasses").Index(j).Child("condition"), &rt.ResponseClasses[j].Condition, 1)...)
		}
		if rt.Timeout != "" {
			errs = append(errs, validatePositiveDuration(p.Child("timeout"), rt.Timeout)...)
		}
	}
	if b := sp.Spec.RetryBudget; b != nil {
		errs = append(errs, validatePositiveDuration(spec.Child("retryBudget", "ttl"), b.TTL)...)
	}
	var total int64
	for i, d := range sp.Spec.DstOverrides {
		p := spec.Child("dstOverrides").Index(i).Child("weight")
		if d.Weight.Sign() < 0 {
			errs = append(errs, field.Invalid(p, d.Weight.String(), "must not be negative"))
		}
		total += d.Weight.MilliValue()
	}
	if len(sp.Spec.DstOverrides) > 0 && total <= 0 {
		errs = append(errs, field.Invalid(spec.Child("dstOverrides"), total, "the weights must add up to more than 0, or the service would receive no traffic"))
	}
	_, portErrs := ProfileOpaquePorts(spec.Child("opaquePorts"), sp.Spec.OpaquePorts)
	return append(errs, portErrs...)
}

// ServiceProfileWarnings are what is valid but may not mean what its author meant:
// a status range with one bound, which matches just that status (Linkerd's meaning)
// where Weft before matched up to 599 or down from 100; a retry ratio above 1, which
// Linkerd takes but which lets retries multiply a failing service's load. Call it on
// a valid profile; the walk trusts validation's bounds.
func ServiceProfileWarnings(sp *meshv1alpha1.ServiceProfile) []string {
	var out []string
	var walk func(p *field.Path, m *meshv1alpha1.ResponseMatch, depth int)
	walk = func(p *field.Path, m *meshv1alpha1.ResponseMatch, depth int) {
		if depth > meshv1alpha1.MaxConditionDepth {
			return
		}
		for i := range m.All {
			walk(p.Child("all").Index(i), &m.All[i], depth+1)
		}
		for i := range m.Any {
			walk(p.Child("any").Index(i), &m.Any[i], depth+1)
		}
		if m.Not != nil {
			walk(p.Child("not"), m.Not, depth+1)
		}
		if s := m.Status; s != nil && (s.Min == nil) != (s.Max == nil) {
			bound, set, other := "min", s.Min, "max"
			if s.Max != nil {
				bound, set, other = "max", s.Max, "min"
			}
			out = append(out, fmt.Sprintf("%s: only %s is set, so the range matches status %d alone (Linkerd's meaning); set %s too for a range",
				p.Child("status"), bound, *set, other))
		}
	}
	for i, rt := range sp.Spec.Routes {
		for j := range rt.ResponseClasses {
			walk(field.NewPath("spec", "routes").Index(i).Child("responseClasses").Index(j).Child("condition"), &rt.ResponseClasses[j].Condition, 1)
		}
	}
	if b := sp.Spec.RetryBudget; b != nil && b.RetryRatio > 1 {
		out = append(out, fmt.Sprintf("spec.retryBudget.retryRatio: %g lets retries outnumber the original requests (up to %gx the load on a failing service); Linkerd's examples use 0.2",
			b.RetryRatio, 1+b.RetryRatio))
	}
	return out
}

// ProfileOpaquePorts reads a ServiceProfile's opaquePorts: numbers, or strings holding a
// port or a range ("4000-4100", the syntax of the opaque-ports annotation). The
// compiler uses the ranges; the errors name each entry that is not a port.
func ProfileOpaquePorts(p *field.Path, ports []intstr.IntOrString) ([]iptables.PortRange, field.ErrorList) {
	var (
		out  []iptables.PortRange
		errs field.ErrorList
	)
	for i, v := range ports {
		if v.Type == intstr.Int {
			if v.IntVal < 1 || v.IntVal > 65535 {
				errs = append(errs, field.Invalid(p.Index(i), v.IntVal, "must be a port between 1 and 65535"))
				continue
			}
			out = append(out, iptables.PortRange{From: uint16(v.IntVal), To: uint16(v.IntVal)})
			continue
		}
		r, err := iptables.ParsePorts(v.StrVal)
		if err != nil || len(r) != 1 || strings.Contains(v.StrVal, ",") {
			errs = append(errs, field.Invalid(p.Index(i), v.StrVal, "must be a port (\"3306\") or a range (\"4000-4100\"), one per entry"))
			continue
		}
		out = append(out, r[0])
	}
	return out, errs
}

// conditionWalk checks one condition tree. The depth bound comes first at each level,
// so the recursion is at most MaxConditionDepth frames whatever was stored, and the
// node count stops a wide tree (16 per list at 8 levels) from costing more than
// MaxConditionNodes regular expressions.
type conditionWalk struct {
	nodes    int
	tooLarge bool
	budget   *profileBudget
}

// profileBudget counts a whole profile's conditions and regular-expression bytes
// against MaxProfileConditions and MaxProfileRegexBytes. Once spent, the walks stop
// looking (and compiling), so validating any profile stays cheap.
type profileBudget struct {
	nodes, regexBytes int
	spent             bool
}

// spend takes n conditions and b bytes of expression; false (with one error, the
// first time) when the profile is over budget.
func (pb *profileBudget) spend(p *field.Path, n, b int) (field.ErrorList, bool) {
	if pb.spent {
		return nil, false
	}
	pb.nodes += n
	pb.regexBytes += b
	switch {
	case pb.nodes > meshv1alpha1.MaxProfileConditions:
		pb.spent = true
		return field.ErrorList{field.Invalid(p, field.OmitValueType{}, fmt.Sprintf("the profile holds more than %d conditions across its routes; merge routes or simplify their conditions", meshv1alpha1.MaxProfileConditions))}, false
	case pb.regexBytes > meshv1alpha1.MaxProfileRegexBytes:
		pb.spent = true
		return field.ErrorList{field.Invalid(p, field.OmitValueType{}, fmt.Sprintf("the profile's pathRegexes add up to more than %d bytes; shorten them or merge routes", meshv1alpha1.MaxProfileRegexBytes))}, false
	}
	return nil, true
}

// enter counts a node and reports the bounds; false means do not look further.
func (w *conditionWalk) enter(p *field.Path, depth int) (field.ErrorList, bool) {
	if depth > meshv1alpha1.MaxConditionDepth {
		return field.ErrorList{field.Invalid(p, field.OmitValueType{}, fmt.Sprintf("conditions nest at most %d levels deep; flatten it (an all inside an all merges into one, a not inside a not cancels out)", meshv1alpha1.MaxConditionDepth))}, false
	}
	if errs, ok := w.budget.spend(p, 1, 0); !ok {
		return errs, false
	}
	w.nodes++
	if w.nodes > meshv1alpha1.MaxConditionNodes {
		if w.tooLarge {
			return nil, false
		}
		w.tooLarge = true
		return field.ErrorList{field.Invalid(p, field.OmitValueType{}, fmt.Sprintf("one condition may hold at most %d conditions in all; split the route", meshv1alpha1.MaxConditionNodes))}, false
	}
	return nil, true
}

// listBound checks an all or any list that is set: empty, it would hold vacuously (or
// never), which Linkerd's proxy does not accept either; beyond MaxConditionList, too
// large.
func listBound[T any](p *field.Path, l []T) field.ErrorList {
	switch {
	case l != nil && len(l) == 0:
		return field.ErrorList{field.Required(p, "must hold at least one condition; leave it out instead")}
	case len(l) > meshv1alpha1.MaxConditionList:
		return field.ErrorList{field.TooMany(p, len(l), meshv1alpha1.MaxConditionList)}
	}
	return nil
}

func (w *conditionWalk) request(p *field.Path, m *meshv1alpha1.RequestMatch, depth int) field.ErrorList {
	errs, ok := w.enter(p, depth)
	if !ok {
		return errs
	}
	if msg := m.DecodeError(); msg != "" {
		errs = append(errs, field.Invalid(p, field.OmitValueType{}, msg))
	}
	if m.All == nil && m.Any == nil && m.Not == nil && m.PathRegex == "" && m.Method == "" && m.DecodeError() == "" {
		errs = append(errs, field.Required(p, "a condition must set at least one of all, any, not, pathRegex or method"))
	}
	errs = append(errs, listBound(p.Child("all"), m.All)...)
	errs = append(errs, listBound(p.Child("any"), m.Any)...)
	for i := range m.All {
		errs = append(errs, w.request(p.Child("all").Index(i), &m.All[i], depth+1)...)
	}
	for i := range m.Any {
		errs = append(errs, w.request(p.Child("any").Index(i), &m.Any[i], depth+1)...)
	}
	if m.Not != nil {
		errs = append(errs, w.request(p.Child("not"), m.Not, depth+1)...)
	}
	if budgetErrs, ok := w.budget.spend(p.Child("pathRegex"), 0, len(m.PathRegex)); ok {
		errs = append(errs, validatePathRegex(p.Child("pathRegex"), m.PathRegex)...)
	} else {
		errs = append(errs, budgetErrs...)
	}
	if m.Method != "" && !methodToken.MatchString(m.Method) {
		errs = append(errs, field.Invalid(p.Child("method"), m.Method, "must be an HTTP method such as GET, at most 32 letters"))
	}
	return errs
}

// methodToken is the schema's pattern for method, checked again here for the nested
// conditions the schema does not reach.
var methodToken = regexp.MustCompile("^[-!#$%&'*+.^_|~0-9A-Za-z]{1,32}$")

func (w *conditionWalk) response(p *field.Path, m *meshv1alpha1.ResponseMatch, depth int) field.ErrorList {
	errs, ok := w.enter(p, depth)
	if !ok {
		return errs
	}
	if msg := m.DecodeError(); msg != "" {
		errs = append(errs, field.Invalid(p, field.OmitValueType{}, msg))
	}
	if m.All == nil && m.Any == nil && m.Not == nil && m.Status == nil && m.DecodeError() == "" {
		errs = append(errs, field.Required(p, "a response condition must set at least one of all, any, not or status"))
	}
	errs = append(errs, listBound(p.Child("all"), m.All)...)
	errs = append(errs, listBound(p.Child("any"), m.Any)...)
	for i := range m.All {
		errs = append(errs, w.response(p.Child("all").Index(i), &m.All[i], depth+1)...)
	}
	for i := range m.Any {
		errs = append(errs, w.response(p.Child("any").Index(i), &m.Any[i], depth+1)...)
	}
	if m.Not != nil {
		errs = append(errs, w.response(p.Child("not"), m.Not, depth+1)...)
	}
	if s := m.Status; s != nil {
		errs = append(errs, validateStatusRange(p.Child("status"), s)...)
	}
	return errs
}

// validateStatusRange: each bound a status, min not above max, and at least one set
// (a range with neither would match every status in Weft and none in Linkerd).
func validateStatusRange(p *field.Path, s *meshv1alpha1.StatusRange) field.ErrorList {
	var errs field.ErrorList
	if s.Min == nil && s.Max == nil {
		return field.ErrorList{field.Required(p, "a status range must set min, max or both (one alone matches just that status)")}
	}
	for _, b := range []struct {
		name string
		v    *int32
	}{{"min", s.Min}, {"max", s.Max}} {
		if b.v != nil && (*b.v < 100 || *b.v > 599) {
			errs = append(errs, field.Invalid(p.Child(b.name), *b.v, "must be an HTTP status between 100 and 599"))
		}
	}
	if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
		errs = append(errs, field.Invalid(p, fmt.Sprintf("%d-%d", *s.Min, *s.Max), "status.min must not be greater than status.max"))
	}
	return errs
}

func validatePathRegex(p *field.Path, expr string) field.ErrorList {
	if expr == "" {
		return nil
	}
	// The schema's bound, again for the nested conditions it does not reach.
	if len(expr) > 1024 {
		return field.ErrorList{field.TooLong(p, "", 1024)}
	}
	if _, err := regexp.Compile("^(?:" + expr + ")$"); err != nil {
		return field.ErrorList{field.Invalid(p, expr, fmt.Sprintf("not a valid RE2 regular expression: %v", err))}
	}
	return nil
}

func validatePositiveDuration(p *field.Path, s string) field.ErrorList {
	d, err := time.ParseDuration(s)
	if err != nil {
		return field.ErrorList{field.Invalid(p, s, "not a duration such as 300ms or 10s")}
	}
	if d <= 0 {
		return field.ErrorList{field.Invalid(p, s, "must be greater than 0")}
	}
	return nil
}
