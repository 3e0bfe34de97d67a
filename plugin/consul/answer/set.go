package answer

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
