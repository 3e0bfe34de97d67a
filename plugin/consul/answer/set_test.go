package answer

import "testing"

func TestBitset(t *testing.T) {
	// One bitset, reused as a pooled builder's are: reset must forget.
	var b bitset
	for _, n := range []int{1, 64, 256, 257, 1000, 3} {
		b.reset(n)
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

// TestShuffle checks that every order comes out about equally often, for
// the lengths drawn from one random number and for longer ones.
func TestShuffle(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 16, 17} {
		const rounds = 60000
		// counts[i][v]: how often value v ended at position i.
		counts := make([][]int, n)
		for i := range counts {
			counts[i] = make([]int, n)
		}
		s := make([]int, n)
		for range rounds {
			for i := range s {
				s[i] = i
			}
			shuffle(s)
			seen := make([]bool, n)
			for i, v := range s {
				if seen[v] {
					t.Fatalf("n=%d: %v is not a permutation", n, s)
				}
				seen[v] = true
				counts[i][v]++
			}
		}
		want := float64(rounds) / float64(n)
		for i := range counts {
			for v, c := range counts[i] {
				if d := float64(c) - want; d > 0.1*want || d < -0.1*want {
					t.Errorf("n=%d: value %d at position %d %d times, want about %.0f", n, v, i, c, want)
				}
			}
		}
	}
}
