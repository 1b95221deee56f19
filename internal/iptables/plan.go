package iptables

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
)

// Command is one iptables invocation.
type Command struct {
	// Binary is "iptables", "ip6tables" or a variant ("iptables-legacy").
	Binary string
	Args   []string
}

// String renders the command as a shell would need it typed.
func (c Command) String() string {
	return c.Binary + " " + shellJoin(c.Args)
}

// State is what one family's nat table holds now, read from iptables-save.
type State struct {
	// Chains are all chains of the table, built-in and user-defined.
	Chains map[string]bool
	// Rules are the table's rules in order, split into words.
	Rules []Rule
}

// ParseSave reads the output of `iptables-save -t nat` (or of a whole iptables-save;
// other tables are ignored).
func ParseSave(text string) (State, error) {
	st := State{Chains: map[string]bool{}}
	inNat := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			inNat = line == "*"+Table
		case !inNat:
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			st.Chains[name] = true
		case strings.HasPrefix(line, "-A "):
			words, err := splitWords(line)
			if err != nil {
				return State{}, fmt.Errorf("iptables-save line %d: %w", n, err)
			}
			if len(words) < 2 {
				return State{}, fmt.Errorf("iptables-save line %d: rule without chain", n)
			}
			st.Rules = append(st.Rules, Rule{Chain: words[1], Args: words[2:]})
		default:
			return State{}, fmt.Errorf("iptables-save line %d: unexpected %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return State{}, fmt.Errorf("reading iptables-save output: %w", err)
	}
	return st, nil
}

// jumpTarget returns the chain a rule jumps to ("" if none).
func (r Rule) jumpTarget() string {
	for i, a := range r.Args {
		if (a == "-j" || a == "--jump") && i+1 < len(r.Args) {
			return r.Args[i+1]
		}
	}
	return ""
}

// Plan returns the commands that take a family's nat table from st to rs. It is a pure
// function: the same state and rules give the same commands.
//
// Weft's chains are flushed (or created) and refilled, so stale rules from an older
// configuration disappear. Hooks are matched by what they jump to rather than by their
// exact words, because iptables-save normalises rules (it adds "-m tcp", reorders
// matches); a missing hook is appended and duplicates are deleted.
func Plan(binary string, rs Ruleset, st State) []Command {
	cmd := func(args ...string) Command {
		return Command{Binary: binary, Args: append([]string{"-w", "5", "-t", Table}, args...)}
	}
	var out []Command
	for _, ch := range rs.Chains {
		if st.Chains[ch] {
			out = append(out, cmd("-F", ch))
		} else {
			out = append(out, cmd("-N", ch))
		}
	}
	for _, r := range rs.Rules {
		out = append(out, cmd(slices.Concat([]string{"-A", r.Chain}, r.Args)...))
	}
	for _, h := range rs.Hooks {
		target := h.jumpTarget()
		var existing []Rule
		for _, r := range st.Rules {
			if r.Chain == h.Chain && r.jumpTarget() == target {
				existing = append(existing, r)
			}
		}
		if len(existing) == 0 {
			out = append(out, cmd(slices.Concat([]string{"-A", h.Chain}, h.Args)...))
			continue
		}
		for _, dup := range existing[1:] {
			out = append(out, cmd(slices.Concat([]string{"-D", dup.Chain}, dup.Args)...))
		}
	}
	return out
}

// splitWords splits an iptables-save line the way iptables-restore does: on spaces,
// with double quotes grouping words and backslash escaping the next character.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == '"':
			inQuote = !inQuote
			inWord = true
		case (c == ' ' || c == '\t') && !inQuote:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// shellJoin quotes words that a shell would split or interpret.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n\"'\\$`!*?[]{}()<>|&;#~") {
			out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		} else {
			out[i] = w
		}
	}
	return strings.Join(out, " ")
}
