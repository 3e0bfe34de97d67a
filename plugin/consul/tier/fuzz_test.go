package tier

import (
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func snapshot0(cluster string) snapshot.Set { return snapshot.Set{Local: "dc1", Cluster: cluster} }

// FuzzDecodeDelta checks that no payload a tier sends makes the follower
// panic, in decoding it or in applying it.
func FuzzDecodeDelta(f *testing.F) {
	base := baseSet()
	for _, tc := range deltaCases() {
		payload, err := EncodeDelta(Diff(base, tc.next(baseSet())))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(payload)
	}
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, payload []byte) {
		d, err := DecodeDelta(payload)
		if err != nil {
			return
		}
		if _, err := Apply(base, d); err == nil {
			return
		}
		if _, err := Apply(nil, d); err != nil {
			return
		}
	})
}
