package answer

import (
	"strings"

	"github.com/miekg/dns"
)

// Why a record was left out of answers: a catalog value DNS cannot carry.
// Consul allows what DNS does not (node names of any length, meta values of
// 512 bytes, addresses that are neither an IP nor a host name), and the
// snapshot file may hold anything: one such value must not fail the answer
// of every instance beside it.
const (
	reasonLongLabel  = "label_too_long" // a label over 63 bytes
	reasonLongName   = "name_too_long"  // a name over 255 bytes
	reasonEmptyLabel = "empty_label"    // a..b, or a leading dot
	reasonBadName    = "bad_name"       // anything else packing refuses
	reasonLongTXT    = "txt_too_long"   // TXT data over what one record holds
)

// maxTXTData is what the character-strings of one TXT record may take: its
// RDLENGTH is 16 bits, and the rest of the message needs room too.
const maxTXTData = 60000

// drops counts the records left out while one service or node was prepared.
type drops struct {
	n map[string]int
	// example is the first value left out, for the one log line per view.
	example string
}

func (d *drops) add(reason, what string) {
	if d.n == nil {
		d.n = make(map[string]int, 1)
		d.example = what
	}
	d.n[reason]++
}

// merge adds d's counts to into and returns into, made when it was nil.
func (d *drops) merge(into *drops) *drops {
	if d == nil || d.n == nil {
		return into
	}
	if into == nil {
		into = &drops{}
	}
	for reason, n := range d.n {
		if into.n == nil {
			into.n, into.example = make(map[string]int, len(d.n)), d.example
		}
		into.n[reason] += n
	}
	return into
}

// nameProblem is why a fully qualified name cannot be packed in a message:
// a reason above, or "" when it can.
func nameProblem(name string) string {
	if _, ok := dns.IsDomainName(name); ok && dns.IsFqdn(name) {
		return ""
	}
	switch {
	case strings.Contains(name, "..") || (strings.HasPrefix(name, ".") && name != "."):
		return reasonEmptyLabel
	case len(name) > 255*4:
		// Longer than any name even written with \DDD escapes.
		return reasonLongName
	}
	for _, label := range dns.SplitDomainName(name) {
		if len(label) > 63 && !strings.Contains(label, `\`) {
			return reasonLongLabel
		}
	}
	if len(name) > 255 {
		return reasonLongName
	}
	return reasonBadName
}

// txtStrings splits s into the character-strings of a TXT record (RFC 1035
// 3.3: at most 255 bytes each), escaped so that packing, which reads \ as an
// escape, sends s's bytes as they are.
func txtStrings(s string) []string {
	out := make([]string, 0, len(s)/255+1)
	for {
		n := min(len(s), 255)
		out = append(out, strings.ReplaceAll(s[:n], `\`, `\\`))
		s = s[n:]
		if s == "" {
			return out
		}
	}
}
