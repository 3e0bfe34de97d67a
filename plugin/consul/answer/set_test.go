package answer

import (
	"fmt"
	"testing"
)

func TestSmallSet(t *testing.T) {
	for _, n := range []int{1, 16, 17, 100} {
		var s smallSet[string]
		for i := range n {
			if !s.add(fmt.Sprint(i)) {
				t.Fatalf("n=%d: %d reported present before it was added", n, i)
			}
		}
		for i := range n {
			if s.add(fmt.Sprint(i)) {
				t.Fatalf("n=%d: %d reported new twice", n, i)
			}
		}
	}
}
