package answer

// idAssigner numbers distinct keys from 0, in order of first appearance,
// while a service is prepared: by a scan while there are few (most
// services), by a map past that.
type idAssigner[K comparable] struct {
	keys []K
	m    map[K]int32
}

const idScanMax = 16

func (a *idAssigner[K]) id(key K) int32 {
	if a.m != nil {
		id, ok := a.m[key]
		if !ok {
			id = int32(len(a.m))
			a.m[key] = id
		}
		return id
	}
	for i, k := range a.keys {
		if k == key {
			return int32(i)
		}
	}
	if len(a.keys) < idScanMax {
		a.keys = append(a.keys, key)
		return int32(len(a.keys) - 1)
	}
	a.m = make(map[K]int32, 2*idScanMax)
	for i, k := range a.keys {
		a.m[k] = int32(i)
	}
	a.m[key] = int32(len(a.keys))
	a.keys = nil
	return a.m[key]
}

func (a *idAssigner[K]) count() int {
	if a.m != nil {
		return len(a.m)
	}
	return len(a.keys)
}
