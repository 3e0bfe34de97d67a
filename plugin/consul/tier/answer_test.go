package tier

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func answer(t *testing.T, env Envelope, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteAnswer(&buf, env, payload); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAnswerRoundTrip(t *testing.T) {
	env := Envelope{Kind: KindDelta, Tier: "t1", Generation: 9, From: 7, Cluster: "c1.consul",
		Contact: []Contact{{Key: dc1, LastAgo: time.Second}, {Key: p1, FailingFor: time.Minute}}}
	payload := []byte("the payload\nwith a newline")
	for _, heartbeats := range []int{0, 1, 5} {
		data := append(bytes.Repeat([]byte{Heartbeat}, heartbeats), answer(t, env, payload)...)
		got, body, err := ReadAnswer(bytes.NewReader(data), 1<<20)
		if err != nil {
			t.Fatalf("%d heartbeats: %v", heartbeats, err)
		}
		want := env
		want.Size, want.SHA256 = int64(len(payload)), got.SHA256
		if !reflect.DeepEqual(got, want) || !bytes.Equal(body, payload) || len(got.SHA256) != 64 {
			t.Errorf("%d heartbeats: read %+v %q, want %+v %q", heartbeats, got, body, want, payload)
		}
	}
	none := Envelope{Kind: KindNone, Tier: "t1", Generation: 9}
	if got, body, err := ReadAnswer(bytes.NewReader(answer(t, none, nil)), 1<<20); err != nil || got.Size != 0 || len(body) != 0 {
		t.Errorf("none: %+v %q %v", got, body, err)
	}
}

// TestReadAnswerGarbage checks that whatever is not a whole answer is
// refused as garbage.
func TestReadAnswerGarbage(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 100)
	good := answer(t, Envelope{Kind: KindWhole, Tier: "t1", Generation: 1}, payload)
	badSum := bytes.Replace(good, []byte(`"SHA256":"`), []byte(`"SHA256":"00`), 1)
	random := make([]byte, 4096)
	rand.NewChaCha8([32]byte{1}).Read(random)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"heartbeats only", []byte("\n\n\n")},
		{"truncated envelope", good[:20]},
		{"truncated payload", good[:len(good)-1]},
		{"bad checksum", badSum},
		{"payload altered", append(good[:len(good)-1:len(good)-1], 'y')},
		{"payload over the max", answer(t, Envelope{Kind: KindWhole, Tier: "t1"}, make([]byte, 2000))},
		{"negative size", []byte(`{"Kind":"whole","Size":-1}` + "\n")},
		{"over-long line", append(append([]byte(`{"Kind":"none","Tier":"`), bytes.Repeat([]byte("a"), 70<<10)...), []byte(`"}`+"\n")...)},
		{"unknown kind", []byte(`{"Kind":"full","Tier":"t1"}` + "\n")},
		{"delta without payload", []byte(`{"Kind":"delta","Tier":"t1"}` + "\n")},
		{"html", []byte("<html><body>502 Bad Gateway</body></html>\n")},
		{"consul's json", []byte(`[{"Node":"n1"}]` + "\n")},
		{"random bytes", random},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadAnswer(bytes.NewReader(tc.data), 1000)
			if !errors.Is(err, ErrGarbage) {
				t.Errorf("ReadAnswer: %v, want an error wrapping ErrGarbage", err)
			}
		})
	}
}

// TestReadAnswerFailure checks that a connection's failure is told apart
// from garbage: the follower counts a tier that hangs otherwise.
func TestReadAnswerFailure(t *testing.T) {
	failing := errors.New("i/o timeout")
	r := io.MultiReader(strings.NewReader("\n\n"), iotest{failing})
	if _, _, err := ReadAnswer(r, 1000); !errors.Is(err, failing) || errors.Is(err, ErrGarbage) {
		t.Errorf("ReadAnswer: %v, want the read's own error", err)
	}
}

type iotest struct{ err error }

func (r iotest) Read([]byte) (int, error) { return 0, r.err }

func TestDecodeDeltaGarbage(t *testing.T) {
	defer func(was int64) { maxDelta = was }(maxDelta)
	maxDelta = 1 << 20
	bomb, err := EncodeDelta(&Delta{Meta: snapshot0(strings.Repeat("a", 2<<20))})
	if err != nil {
		t.Fatal(err)
	}
	for name, payload := range map[string][]byte{
		"not gzip": []byte("{}"), "empty": nil, "truncated": bomb[:len(bomb)/2], "bomb": bomb,
	} {
		if _, err := DecodeDelta(payload); !errors.Is(err, ErrGarbage) {
			t.Errorf("%s: %v, want an error wrapping ErrGarbage", name, err)
		}
	}
}
