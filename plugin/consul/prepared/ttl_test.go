package prepared

import (
	"testing"
	"time"
)

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"10s", 10 * time.Second, true},
		{"1m30s", 90 * time.Second, true},
		{"0s", 0, true},
		{"1500ms", 1500 * time.Millisecond, true},
		// agent/dns.go:1633-1641: the failed parse leaves 0, not the service TTL.
		{"ten seconds", 0, true},
		{"10", 0, true},
		{"-5s", 0, true},
	}
	for _, tt := range tests {
		got, ok := ParseTTL(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
