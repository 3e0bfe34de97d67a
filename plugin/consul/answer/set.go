package answer

// smallSet is a set for the few members one answer has: an array scan up to
// 16 members, a map past that, so that small answers allocate no map.
type smallSet[K comparable] struct {
	n     int
	small [16]K
	large map[K]struct{}
}

// add adds k and reports whether it was new.
func (s *smallSet[K]) add(k K) bool {
	if s.large != nil {
		if _, ok := s.large[k]; ok {
			return false
		}
		s.large[k] = struct{}{}
		return true
	}
	for _, x := range s.small[:s.n] {
		if x == k {
			return false
		}
	}
	if s.n < len(s.small) {
		s.small[s.n] = k
		s.n++
		return true
	}
	s.large = make(map[K]struct{}, 2*len(s.small))
	for _, x := range s.small {
		s.large[x] = struct{}{}
	}
	s.large[k] = struct{}{}
	return true
}
