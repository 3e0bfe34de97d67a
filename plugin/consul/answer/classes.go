package answer

import "github.com/miekg/dns"

// Address classes: Consul picks an instance's address by the question type
// (translateAddressAccept): A prefers lan_ipv4, AAAA lan_ipv6, and every
// other type lan_ipv6 then lan_ipv4.
const (
	classA = iota
	classAAAA
	classOther
	classes
)

// classTypes are question types that stand for each class.
var classTypes = [classes]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV}

func classOf(qtype uint16) int {
	switch qtype {
	case dns.TypeA:
		return classA
	case dns.TypeAAAA:
		return classAAAA
	}
	return classOther
}
