package snapshot

// For the external tests, which build views from what Decode returns.
var (
	Sample = sample
	Framed = framed
)
