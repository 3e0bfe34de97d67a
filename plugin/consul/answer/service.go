package answer

import (
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// service is a service prepared for answering: its instances that DNS
// returns (not critical; only passing ones with only_passing), with their
// targets resolved for every address class.
type service struct {
	src  *snapshot.Service
	ttl  uint32
	inst []instance
	// ids counts the distinct keys of each kind, so that a question can
	// de-duplicate with a bitset instead of a map.
	ids [idKinds]int
	// bySrc finds an instance by its snapshot instance, for prepared
	// queries, when there are too many to scan; nil for few.
	bySrc map[*snapshot.Instance]int32
	// dropped counts the records DNS cannot carry that were left out;
	// nil for none.
	dropped *drops
}

// Kinds of distinct keys within one service: addresses, SRV records (target
// and port), SRV targets (for glue) and nodes (for meta).
const (
	idAddr = iota
	idSRV
	idGlue
	idNode
	idKinds
	noZoneIdx = -1
)

type instance struct {
	src     *snapshot.Instance
	nodeKey string // the node's lower-case name, for its meta
	nodeID  int32
	weight  uint16
	// to is the target for each address class, nil for none. Classes that
	// pick the same address (no tagged lan_ipv4/lan_ipv6) share one.
	to [classes]*target
}

// service resolves every instance's targets and names them in every zone.
// Instances whose key repeats get the same id, so that a question
// de-duplicates by comparing small integers. What it builds is kept for as
// long as the service is unchanged: it is laid out in a few slabs rather
// than many small values.
func (v *preparer) service(svc *snapshot.Service) *service {
	return v.serviceWith(svc, v.opt.TTL.Service(snapshot.Key(svc.Name)), func(in *snapshot.Instance) bool {
		return in.Health != snapshot.Critical && (!v.opt.OnlyPassing || in.Health == snapshot.Passing)
	})
}

// serviceWith prepares the instances of svc that keep accepts, with ttl.
func (v *preparer) serviceWith(svc *snapshot.Service, ttl uint32, keep func(*snapshot.Instance) bool) *service {
	p := &service{src: svc, ttl: ttl, inst: make([]instance, 0, len(svc.Instances))}
	b := serviceBuilder{preparer: v, ttl: p.ttl}
	b.targets = make([]target, 0, len(svc.Instances))
	b.srv = make([]srvTarget, 0, len(svc.Instances)*len(v.zones))
	for i := range svc.Instances {
		in := &svc.Instances[i]
		if !keep(in) {
			continue
		}
		pi := instance{src: in, nodeKey: snapshot.Key(in.Node), weight: v.weight(in)}
		pi.nodeID = b.nodeIDs.id(pi.nodeKey)
		var addrs [classes][2]string
		for c, qtype := range classTypes {
			addrs[c] = [2]string{pickAddress(in.Address, in.TaggedAddresses, qtype), pickAddress(in.NodeAddress, in.NodeTaggedAddresses, qtype)}
		}
		// The SRV target first: A and AAAA share it when they pick the same.
		pi.to[classOther] = b.resolve(in, classOther)
		for _, c := range [...]int{classA, classAAAA} {
			if addrs[c] == addrs[classOther] {
				pi.to[c] = pi.to[classOther]
			} else {
				pi.to[c] = b.resolve(in, c)
			}
		}
		p.inst = append(p.inst, pi)
	}
	p.dropped = b.dropped
	p.ids = [idKinds]int{idAddr: b.addrIDs.count(), idSRV: b.srvIDs.count(), idGlue: b.glueIDs.count(), idNode: b.nodeIDs.count()}
	if len(p.inst) > idScanMax {
		p.bySrc = make(map[*snapshot.Instance]int32, len(p.inst))
		for i := range p.inst {
			p.bySrc[p.inst[i].src] = int32(i)
		}
	}
	return p
}

// weight is the SRV weight Consul gives an instance: its Weights.Warning when
// the instance is warning, else Weights.Passing; 1 when unset; 0 when
// critical. Scaled for
// HAProxy when asked.
func (v *preparer) weight(in *snapshot.Instance) uint16 {
	if in.Health == snapshot.Critical {
		// Only a prepared query that ignores the failing check returns a
		// critical instance; Consul's findWeight gives it 0.
		return 0
	}
	w := in.WeightPassing
	if in.Health == snapshot.Warning {
		w = in.WeightWarning
	}
	w = max(w, 1)
	if v.opt.HAProxyWeights {
		w = w*256 - 1
	}
	return uint16(min(w, 65535))
}
