package answer

import (
	"net"
	"reflect"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// Kinds of mesh names. Numbered apart from the kinds in parse.go, which
// may grow without renumbering these.
const (
	KindConnect Kind = 16 + iota // <svc>.connect: its proxies, or itself when Connect-native
	KindIngress                  // <svc>.ingress: the ingress gateways exposing it
	KindVirtual                  // <svc>.virtual: its virtual IP
)

// parseMesh reads a connect, ingress or virtual name: parts are the labels
// left of the type label (the locality is read into name already). As
// Consul, the service is the label next to the type.
func parseMesh(name *Name, typ string, parts []string) {
	if len(parts) == 0 {
		*name = Name{}
		return
	}
	name.Service = parts[len(parts)-1]
	switch typ {
	case "connect":
		name.Kind = KindConnect
	case "ingress":
		name.Kind = KindIngress
	case "virtual":
		// Virtual IPs are allocated per datacenter: Consul ignores <dc>.dc
		// (a peer's names are parsePeerVirtual's).
		name.Kind = KindVirtual
		name.Datacenter = ""
	}
}

// meshIndex is what a view answers <svc>.connect, <svc>.ingress and
// <svc>.virtual from. Consul answers the first two as service answers over
// other instances (a service's proxies and terminating gateways, an exposed
// service's ingress gateways), so each is a service of its own, named after
// the service asked about and prepared like any other.
type meshIndex struct {
	connect map[string]*meshSet // by the destination's key
	ingress map[string]*meshSet // by the exposed service's key
	virtual map[string]net.IP   // by the service's key
	// linked are the services a terminating gateway links: their virtual
	// IP is on the gateway's registration once Consul has written it.
	linked map[string]bool
	// from are the services the index was derived from (proxies,
	// Connect-native services, gateways), by key: while they and the
	// gateways' entries stay the same, the next snapshot's index is this
	// one.
	from map[string]*snapshot.Service
	// ingressUnknown and terminatingUnknown: a gateway of that kind is
	// registered, and the entries were not read, or one names "*" (by
	// protocol, or every service), which the replica does not resolve: a
	// name no known gateway serves may still be served. Without any such
	// gateway, no name is served, read or not.
	ingressUnknown, terminatingUnknown bool
}

// meshSet is one name's instances, drawn from the services in from.
type meshSet struct {
	from []*snapshot.Service // sorted by name, for reuse by identity
	svc  *service
}

// newMeshIndex derives the mesh names of snap. A set whose services are the
// very values prev's was drawn from keeps what prev prepared: a publish
// prepares again only the sets whose proxies or gateways changed.
func newMeshIndex(snap *snapshot.Snapshot, prev *View, prep *preparer) *meshIndex {
	if prev != nil && prev.mesh != nil && prev.prep == prep && sameMesh(snap, prev.Snap, prev.mesh) {
		return prev.mesh
	}
	m := &meshIndex{from: map[string]*snapshot.Service{}}
	exposed, wildIngress := gatewayServices(snap.Ingress)
	linked, wildTerminating := gatewayServices(snap.Terminating)
	connectFrom := map[string][]*snapshot.Service{}
	ingressFrom := map[string][]*snapshot.Service{}
	for key, svc := range snap.Services {
		if svc == nil {
			continue
		}
		if len(exposed[key]) > 0 || len(linked[key]) > 0 || inMesh(svc) {
			m.from[key] = svc
		}
		for _, s := range exposed[key] {
			ingressFrom[s] = append(ingressFrom[s], svc)
		}
		for _, s := range linked[key] {
			connectFrom[s] = append(connectFrom[s], svc)
			m.linked = setTrue(m.linked, s)
		}
		for i := range svc.Instances {
			in := &svc.Instances[i]
			switch kind(in) {
			case snapshot.KindIngressGateway:
				m.ingressUnknown = m.ingressUnknown || !snap.IngressRead || wildIngress
			case snapshot.KindTerminatingGateway:
				m.terminatingUnknown = m.terminatingUnknown || !snap.TerminatingRead || wildTerminating
				m.virtual = linkedVirtuals(m.virtual, in.TaggedAddresses)
			}
			dest := connectDestination(svc, in)
			if dest == "" {
				continue
			}
			if from := connectFrom[dest]; len(from) == 0 || from[len(from)-1] != svc {
				connectFrom[dest] = append(from, svc)
			}
			if vip := net.ParseIP(in.TaggedAddresses[snapshot.VirtualIPTag]); vip != nil {
				m.virtual = setVirtual(m.virtual, dest, vip)
			}
		}
	}
	var prevConnect, prevIngress map[string]*meshSet
	if prev != nil && prev.mesh != nil && prev.prep == prep {
		prevConnect, prevIngress = prev.mesh.connect, prev.mesh.ingress
	}
	m.connect = meshSets(connectFrom, prevConnect, prep, func(dest string, svc *snapshot.Service) []snapshot.Instance {
		if slices.Contains(linked[snapshot.Key(svc.Name)], dest) {
			return svc.Instances
		}
		return connectInstances(dest, svc)
	})
	m.ingress = meshSets(ingressFrom, prevIngress, prep, func(_ string, svc *snapshot.Service) []snapshot.Instance {
		return svc.Instances
	})
	return m
}

// sameMesh reports whether snap holds the mesh data of prev, from which
// m was derived: the same gateway entries, the same services m was derived
// from, and no other service that changed since prev holding mesh data.
// Consecutive snapshots share unchanged services, so this costs a lookup
// per service, not a scan of every instance.
func sameMesh(snap, prev *snapshot.Snapshot, m *meshIndex) bool {
	if snap.IngressRead != prev.IngressRead || snap.TerminatingRead != prev.TerminatingRead ||
		!reflect.DeepEqual(snap.Ingress, prev.Ingress) || !reflect.DeepEqual(snap.Terminating, prev.Terminating) {
		return false
	}
	for key, svc := range m.from {
		if snap.Services[key] != svc {
			return false
		}
	}
	for key, svc := range snap.Services {
		if svc != nil && prev.Services[key] != svc && (inMesh(svc) || names(snap.Ingress, key) || names(snap.Terminating, key)) {
			return false
		}
	}
	return true
}

// inMesh reports whether an instance of svc is a proxy, Connect-native or
// a gateway.
func inMesh(svc *snapshot.Service) bool {
	for i := range svc.Instances {
		if svc.Instances[i].Mesh != nil {
			return true
		}
	}
	return false
}

// names reports whether an entry is the gateway of service key.
func names(entries []*snapshot.Gateway, key string) bool {
	for _, gw := range entries {
		if gw != nil && snapshot.Key(gw.Name) == key {
			return true
		}
	}
	return false
}

// gatewayServices maps each gateway's service key to the services it
// names; wildcard when one names "*".
func gatewayServices(entries []*snapshot.Gateway) (named map[string][]string, wildcard bool) {
	named = map[string][]string{}
	for _, gw := range entries {
		if gw == nil {
			continue
		}
		for _, s := range gw.Services {
			if s == "*" {
				wildcard = true
				continue
			}
			named[snapshot.Key(gw.Name)] = append(named[snapshot.Key(gw.Name)], snapshot.Key(s))
		}
	}
	return named, wildcard
}

func kind(in *snapshot.Instance) string {
	if in.Mesh == nil {
		return ""
	}
	return in.Mesh.Kind
}

// linkedVirtuals adds the virtual IPs a terminating gateway's registration
// carries for the services it links, tagged consul-virtual:<service>.
func linkedVirtuals(m map[string]net.IP, tagged map[string]string) map[string]net.IP {
	for tag, addr := range tagged {
		name, ok := strings.CutPrefix(tag, snapshot.VirtualIPTag+":")
		if vip := net.ParseIP(addr); ok && name != "" && vip != nil {
			m = setVirtual(m, snapshot.Key(name), vip)
		}
	}
	return m
}

func setTrue(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// connectDestination is the lower-case name of the service whose
// <svc>.connect name in answers, as Consul's connect index reads it: a
// proxy's destination, a Connect-native service's own name; empty for
// neither.
func connectDestination(svc *snapshot.Service, in *snapshot.Instance) string {
	switch {
	case in.Mesh == nil:
		return ""
	case in.Mesh.Kind == snapshot.KindConnectProxy:
		return snapshot.Key(in.Mesh.Destination)
	case in.Mesh.Native:
		return snapshot.Key(svc.Name)
	}
	return ""
}

func connectInstances(dest string, svc *snapshot.Service) []snapshot.Instance {
	var out []snapshot.Instance
	for i := range svc.Instances {
		if connectDestination(svc, &svc.Instances[i]) == dest {
			out = append(out, svc.Instances[i])
		}
	}
	return out
}

// setVirtual keeps one virtual IP per service: Consul allocates one per
// service name and tags every proxy of it with that one; should two
// registrations disagree, the lower address wins, so answers do not flap.
func setVirtual(m map[string]net.IP, dest string, vip net.IP) map[string]net.IP {
	if m == nil {
		m = map[string]net.IP{}
	}
	if old, ok := m[dest]; !ok || strings.Compare(vip.String(), old.String()) < 0 {
		m[dest] = vip
	}
	return m
}

// meshSets prepares one service per name from the instances that take
// picks from each service in from.
func meshSets(from map[string][]*snapshot.Service, prev map[string]*meshSet, prep *preparer,
	takes func(name string, svc *snapshot.Service) []snapshot.Instance) map[string]*meshSet {
	if len(from) == 0 {
		return nil
	}
	out := make(map[string]*meshSet, len(from))
	for name, svcs := range from {
		slices.SortFunc(svcs, func(a, b *snapshot.Service) int { return strings.Compare(a.Name, b.Name) })
		if p, ok := prev[name]; ok && slices.Equal(p.from, svcs) {
			out[name] = p
			continue
		}
		merged := &snapshot.Service{Name: name}
		for _, svc := range svcs {
			merged.Instances = append(merged.Instances, takes(name, svc)...)
			merged.Index = max(merged.Index, svc.Index)
		}
		out[name] = &meshSet{from: svcs, svc: prep.service(merged)}
	}
	return out
}

// mesh answers <svc>.connect and <svc>.ingress, into b.res.
func (b *builder) mesh(name *Name) {
	sets := b.v.mesh.connect
	if name.Kind == KindIngress {
		sets = b.v.mesh.ingress
	}
	set, ok := sets[name.Service]
	switch {
	case ok:
		b.records(set.svc, set.svc.pick("", b.picked[:0]))
	case name.Kind == KindIngress && b.v.mesh.ingressUnknown, name.Kind == KindConnect && b.v.mesh.terminatingUnknown:
		b.res = Result{PassOn: true}
	default:
		b.res = b.nxdomain()
	}
}

// virtual answers <svc>.virtual (a peer's is peerVirtual) as Consul does:
// the service's virtual IP (virtualIP), NOERROR whether or not the service
// has one. A service a terminating gateway links (or may link) whose
// virtual IP no registration shows yet is passed on.
func (b *builder) virtual(name *Name) Result {
	ip := b.v.mesh.virtual[name.Service]
	if ip == nil && (b.v.mesh.linked[name.Service] || b.v.mesh.terminatingUnknown) {
		return Result{PassOn: true}
	}
	return b.virtualIP(ip)
}

// virtualIP is the answer to a virtual name whose address is ip (nil for
// none: NOERROR with nothing): in the answer section for its own family's
// question and ANY, in the additional section for any other.
func (b *builder) virtualIP(ip net.IP) Result {
	if ip == nil {
		return Result{Rcode: dns.RcodeSuccess}
	}
	// Consul names the record after the question in lower case.
	rr := addressRR(b.q.Lower, ip, b.opt.TTL.Node)
	if b.q.Type == rr.Header().Rrtype || b.q.Type == dns.TypeANY {
		return Result{Answer: []dns.RR{rr}}
	}
	return Result{Extra: []dns.RR{rr}}
}
