package tier

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Envelope is the one JSON line that starts every answer, after any
// heartbeats.
type Envelope struct {
	// Kind is "whole", "delta" or "none" (the wait ended with nothing
	// newer).
	Kind string
	// Tier is the tier's instance ID: random, new each time the tier's
	// process starts, so that a follower never applies one tier's delta to
	// another's generations.
	Tier string
	// Generation is the generation the answer brings the follower to.
	Generation uint64
	// From is, for a delta, the generation it applies to.
	From uint64 `json:",omitempty"`
	// Size is the bytes of payload following the line; SHA256 their hex
	// digest.
	Size   int64  `json:",omitempty"`
	SHA256 string `json:",omitempty"`
	// Cluster is the Set's Cluster, so that a follower can refuse another
	// cluster's tier before decoding anything.
	Cluster string `json:",omitempty"`
	// Contact is how current the tier is with Consul, per snapshot.
	Contact []Contact `json:",omitempty"`
}

// Answer kinds.
const (
	KindWhole = "whole"
	KindDelta = "delta"
	KindNone  = "none"
)

// Contact is how current a tier is with Consul for one snapshot.
type Contact struct {
	Key
	// LastAgo is the time since the tier's last successful read for that
	// snapshot's replica (0: just now).
	LastAgo time.Duration
	// FailingFor is how long the tier's reads have been failing; 0 when it
	// reads fine.
	FailingFor time.Duration `json:",omitempty"`
}

// Heartbeat is written every Config.Heartbeat while the tier waits, so that
// a follower tells a tier that waits from one that hangs; a follower skips
// them.
const Heartbeat = '\n'

// ErrGarbage wraps every reason an answer, or its payload, is refused.
var ErrGarbage = errors.New("not a feed answer")

// maxLine bounds the envelope's line.
const maxLine = 64 << 10

// WriteAnswer writes env, with its Size and SHA256 set from payload, then
// payload.
func WriteAnswer(w io.Writer, env Envelope, payload []byte) error {
	env.Size, env.SHA256 = int64(len(payload)), ""
	if len(payload) > 0 {
		sum := sha256.Sum256(payload)
		env.SHA256 = hex.EncodeToString(sum[:])
	}
	line, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encoding the answer's envelope: %w", err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing the answer's envelope: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("writing the answer's payload: %w", err)
	}
	return nil
}

// ReadAnswer reads an answer: the heartbeats, which it skips, the envelope's
// line (at most 64 KiB), then exactly Size bytes of payload (at most
// maxPayload), checked against SHA256. A truncated answer, garbage, an
// over-long line or payload give an error wrapping ErrGarbage; a failure to
// read (a deadline, a reset connection) is returned as it is.
func ReadAnswer(r io.Reader, maxPayload int64) (Envelope, []byte, error) {
	br := bufio.NewReaderSize(r, 4096)
	line, err := readLine(br)
	if err != nil {
		return Envelope{}, nil, err
	}
	var env Envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: envelope: %v", ErrGarbage, err)
	}
	switch {
	case env.Kind != KindWhole && env.Kind != KindDelta && env.Kind != KindNone:
		return env, nil, fmt.Errorf("%w: answer of kind %.40q", ErrGarbage, env.Kind)
	case env.Size < 0 || env.Size > maxPayload:
		return env, nil, fmt.Errorf("%w: payload of %d bytes, at most %d taken", ErrGarbage, env.Size, maxPayload)
	case env.Kind != KindNone && env.Size == 0:
		return env, nil, fmt.Errorf("%w: %s answer without a payload", ErrGarbage, env.Kind)
	}
	// Read as it arrives rather than allocated from Size: a tier that
	// promises much and sends little costs only what it sent.
	payload, err := io.ReadAll(io.LimitReader(br, env.Size))
	if err != nil {
		return env, nil, readErr("payload", err)
	}
	if int64(len(payload)) != env.Size {
		return env, nil, fmt.Errorf("%w: truncated: %d bytes of payload, envelope says %d", ErrGarbage, len(payload), env.Size)
	}
	if env.Size > 0 {
		sum := sha256.Sum256(payload)
		if hex.EncodeToString(sum[:]) != env.SHA256 {
			return env, nil, fmt.Errorf("%w: payload checksum mismatch", ErrGarbage)
		}
	}
	return env, payload, nil
}

// readLine skips the heartbeats and reads the envelope's line.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, readErr("envelope", err)
		}
		if b == Heartbeat {
			continue
		}
		line = append(line, b)
		break
	}
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("%w: envelope longer than %d KiB", ErrGarbage, maxLine>>10)
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte{'\n'}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, readErr("envelope", err)
		}
	}
}

// readErr sorts a failure to read: the answer ended early (garbage), or
// the connection failed (as it is).
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated %s", ErrGarbage, what)
	}
	return fmt.Errorf("reading the answer's %s: %w", what, err)
}
