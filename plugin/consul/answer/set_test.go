package answer

import "testing"

func TestBitset(t *testing.T) {
	for _, n := range []int{1, 64, 256, 257, 1000} {
		b := newBitset(n)
		for i := range n {
			if !b.add(i) {
				t.Fatalf("n=%d: %d reported present before it was added", n, i)
			}
		}
		for i := range n {
			if b.add(i) {
				t.Fatalf("n=%d: %d reported new twice", n, i)
			}
		}
	}
}
