// Package answer turns a DNS question into records, read from a snapshot of
// the Consul catalog, following the naming rules of Consul's own DNS
// interface. It knows nothing about Consul's HTTP API.
package answer

import (
	"encoding/hex"
	"net"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// Question is a parsed DNS question.
type Question struct {
	// Name is the owner name to answer with: the question's name as asked,
	// so its case is echoed back.
	Name string
	// Labels is the lower-cased name without the zone, split into labels.
	Labels []string
	Zone   string // the matched zone, lower case, fully qualified
	Type   uint16
}

// Result is what the answer builder found for a question.
type Result struct {
	Rcode  int
	Answer []dns.RR
	Extra  []dns.RR
	// Ns carries the zone's SOA on negative answers (NXDOMAIN and NODATA) so
	// resolvers can cache them for the SOA minimum, per RFC 2308.
	Ns []dns.RR
}

// Options are the answer settings from the Corefile.
type Options struct {
	TTL uint32 // TTL of service records; 0 as in Consul
}

// NewQuestion splits name, which must be inside zone, into its labels.
func NewQuestion(name, zone string, qtype uint16) Question {
	lower := strings.ToLower(name)
	rel := strings.TrimSuffix(strings.TrimSuffix(lower, zone), ".")
	var labels []string
	if rel != "" {
		labels = strings.Split(rel, ".")
	}
	return Question{Name: name, Labels: labels, Zone: zone, Type: qtype}
}

// Lookup answers q from snap.
func Lookup(snap *snapshot.Snapshot, q Question, opt Options) Result {
	labels := q.Labels
	n := len(labels)
	switch {
	case n == 0:
		return apex(snap, q)
	case n >= 2 && labels[n-1] == "service",
		n >= 3 && labels[n-2] == "service" && labels[n-1] == snap.Datacenter:
		if labels[n-1] != "service" {
			labels = labels[:n-1]
		}
		return service(snap, q, labels[:len(labels)-1], opt)
	}
	return nxdomain(snap, q)
}

func apex(snap *snapshot.Snapshot, q Question) Result {
	if q.Type == dns.TypeSOA {
		return Result{Rcode: dns.RcodeSuccess, Answer: []dns.RR{soa(snap, q.Zone)}}
	}
	return nodata(snap, q)
}

// service answers <service>.service[.<dc>].
func service(snap *snapshot.Snapshot, q Question, labels []string, opt Options) Result {
	if len(labels) != 1 {
		return nxdomain(snap, q)
	}
	svc, ok := snap.Service(labels[0])
	if !ok {
		return nxdomain(snap, q)
	}
	healthy := healthyInstances(svc)
	if len(healthy) == 0 {
		return nxdomain(snap, q)
	}
	var res Result
	switch q.Type {
	case dns.TypeA, dns.TypeAAAA:
		res.Answer = addressRecords(q.Name, q.Type, healthy, opt.TTL)
	case dns.TypeSRV:
		res.Answer, res.Extra = srvRecords(snap, q, healthy, opt.TTL)
	}
	if len(res.Answer) == 0 {
		return nodata(snap, q)
	}
	res.Rcode = dns.RcodeSuccess
	return res
}

// healthyInstances returns the instances Consul's DNS would return: all but
// the critical ones.
func healthyInstances(svc *snapshot.Service) []*snapshot.Instance {
	out := make([]*snapshot.Instance, 0, len(svc.Instances))
	for i := range svc.Instances {
		if svc.Instances[i].Health != snapshot.Critical {
			out = append(out, &svc.Instances[i])
		}
	}
	return out
}

// instanceIP is the address an instance is reached at: its own, else its node's.
func instanceIP(in *snapshot.Instance) net.IP {
	if in.Address != "" {
		return net.ParseIP(in.Address)
	}
	return net.ParseIP(in.NodeAddress)
}

func addressRecords(name string, qtype uint16, instances []*snapshot.Instance, ttl uint32) []dns.RR {
	seen := make(map[string]struct{}, len(instances))
	var out []dns.RR
	for _, in := range instances {
		ip := instanceIP(in)
		if ip == nil {
			continue
		}
		if _, dup := seen[string(ip)]; dup {
			continue
		}
		if rr := addressRR(name, qtype, ip, ttl); rr != nil {
			seen[string(ip)] = struct{}{}
			out = append(out, rr)
		}
	}
	return out
}

// addressRR returns an A or AAAA record for ip when it is of type qtype.
func addressRR(name string, qtype uint16, ip net.IP, ttl uint32) dns.RR {
	if v4 := ip.To4(); v4 != nil {
		if qtype != dns.TypeA {
			return nil
		}
		return &dns.A{Hdr: header(name, dns.TypeA, ttl), A: v4}
	}
	if qtype != dns.TypeAAAA {
		return nil
	}
	return &dns.AAAA{Hdr: header(name, dns.TypeAAAA, ttl), AAAA: ip}
}

// srvRecords returns one SRV record per instance, with its target's address
// in the extra section under exactly the target's name: HAProxy pairs them by
// name and sends one more query per server when they differ.
func srvRecords(snap *snapshot.Snapshot, q Question, instances []*snapshot.Instance, ttl uint32) (answer, extra []dns.RR) {
	for _, in := range instances {
		ip := instanceIP(in)
		if ip == nil {
			continue
		}
		target := srvTarget(snap, q.Zone, in, ip)
		answer = append(answer, &dns.SRV{
			Hdr:      header(q.Name, dns.TypeSRV, ttl),
			Priority: 1,
			Weight:   weight(in),
			Port:     in.Port,
			Target:   target,
		})
		qtype := uint16(dns.TypeA)
		if ip.To4() == nil {
			qtype = dns.TypeAAAA
		}
		extra = append(extra, addressRR(target, qtype, ip, ttl))
	}
	return answer, extra
}

// srvTarget names an instance the way Consul does: <hexip>.addr.<dc>.<zone>
// when the service has its own address, <node>.node.<dc>.<zone> when it uses
// its node's.
func srvTarget(snap *snapshot.Snapshot, zone string, in *snapshot.Instance, ip net.IP) string {
	if in.Address != "" {
		raw := ip.To4()
		if raw == nil {
			raw = ip.To16()
		}
		return hex.EncodeToString(raw) + ".addr." + snap.Datacenter + "." + zone
	}
	return in.Node + ".node." + snap.Datacenter + "." + zone
}

// weight is the SRV weight Consul gives an instance: its Weights.Warning when
// the instance is warning, else Weights.Passing; 1 when unset.
func weight(in *snapshot.Instance) uint16 {
	w := in.WeightPassing
	if in.Health == snapshot.Warning {
		w = in.WeightWarning
	}
	if w <= 0 {
		return 1
	}
	return uint16(min(w, 65535))
}

func nxdomain(snap *snapshot.Snapshot, q Question) Result {
	return Result{Rcode: dns.RcodeNameError, Ns: []dns.RR{soa(snap, q.Zone)}}
}

func nodata(snap *snapshot.Snapshot, q Question) Result {
	return Result{Rcode: dns.RcodeSuccess, Ns: []dns.RR{soa(snap, q.Zone)}}
}

// soa is the zone's SOA record, shaped like Consul's: the serial moves with
// the replicated index so it changes when the data does.
func soa(snap *snapshot.Snapshot, zone string) dns.RR {
	return &dns.SOA{
		Hdr:     header(zone, dns.TypeSOA, 0),
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  uint32(snap.Index),
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  0,
	}
}

func header(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}
