package follower

import (
	"maps"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func TestFollowerConverges(t *testing.T) {
	g1 := set(dc("dc1", "", 10, sv("a", 10), sv("b", 10)), dc("dc2", "", 3, sv("x", 3)))
	tt := startTier(t, "secret", g1)
	f := start(t, Config{TokenFile: tokenFile(t, "secret")}, tt.addr)
	got := make(chan *snapshot.Snapshot, 100)
	cancel := f.Subscribe(tierKey("dc1"), func(s *snapshot.Snapshot) { got <- s })
	defer cancel()
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10, "b": 10})
	g2 := set(with(g1.Datacenters[0], 11, map[string]*snapshot.Service{"a": sv("a", 11), "b": nil}), g1.Datacenters[1])
	tt.offer(g2)
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 11})
	for {
		s := <-got
		if maps.Equal(indexes(s), map[string]uint64{"a": 11}) {
			break
		}
	}
}
