package iptables

import "fmt"

// Missing compares a family's nat table with the rules it should hold and lists what
// is absent: a chain, a hook, or rules of Weft's chains (by count, since iptables-save
// normalises each rule's words). Empty means the rules are in place. The CNI plugin's
// CHECK uses it.
func Missing(rs Ruleset, st State) []string {
	var out []string
	for _, ch := range rs.Chains {
		if !st.Chains[ch] {
			out = append(out, "chain "+ch)
		}
	}
	want, have := map[string]int{}, map[string]int{}
	for _, r := range rs.Rules {
		want[r.Chain]++
	}
	for _, r := range st.Rules {
		have[r.Chain]++
	}
	for _, ch := range rs.Chains {
		if st.Chains[ch] && have[ch] != want[ch] {
			out = append(out, fmt.Sprintf("chain %s holds %d rules, want %d", ch, have[ch], want[ch]))
		}
	}
	for _, h := range rs.Hooks {
		found := false
		for _, r := range st.Rules {
			if r.Chain == h.Chain && r.jumpTarget() == h.jumpTarget() {
				found = true
				break
			}
		}
		if !found {
			out = append(out, "hook "+h.Chain+" -> "+h.jumpTarget())
		}
	}
	return out
}
