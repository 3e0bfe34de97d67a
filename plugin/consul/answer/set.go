package answer

import "math/rand/v2"

// bitset marks the ids an answer has used, to de-duplicate records: in the
// builder's own words for the first 256 ids, which covers nearly every
// service.
type bitset struct {
	small [4]uint64
	large []uint64
}

// reset empties b for ids 0 to n-1.
func (b *bitset) reset(n int) {
	b.small = [4]uint64{}
	b.large = nil
	if n > 64*len(b.small) {
		b.large = make([]uint64, (n+63)/64)
	}
}

// add marks id and reports whether it was new.
func (b *bitset) add(id int) bool {
	words := b.small[:]
	if b.large != nil {
		words = b.large
	}
	w, bit := id/64, uint64(1)<<(id%64)
	if words[w]&bit != 0 {
		return false
	}
	words[w] |= bit
	return true
}

// shuffle puts s in random order. Up to 16 elements it draws one random
// number and reads it as digits of falling bases: 16! is 2^-20 of 2^64, so
// no order is favoured by more than that. rand.Shuffle draws one per
// element, in frames deep enough to make a question's goroutine stack grow.
func shuffle[T any](s []T) {
	if len(s) > 16 {
		rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return
	}
	r := rand.Uint64()
	for i := len(s) - 1; i > 0; i-- {
		n := uint64(i + 1)
		j := r % n
		r /= n
		s[i], s[j] = s[j], s[i]
	}
}
