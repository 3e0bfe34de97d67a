package corednsproc

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/metrics"
)

// A tier is a direct-mode instance that also serves what it replicates to
// followers (tier_listen); a follower is an instance whose source is two or
// more tiers instead of Consul (follow). Both are CoreDNS processes like any
// other: these helpers only write their Corefiles and keep what a test needs
// to restart them where their clients expect them.

// TierOptions say how a tier reads Consul and serves its followers.
type TierOptions struct {
	// Address is the Consul agent it replicates, as the address setting.
	Address string
	// TokenFile is tier_token_file; NoAuth writes tier_no_auth instead.
	TokenFile string
	NoAuth    bool
	// Snapshot is the snapshot file; none when empty. SnapshotEvery is as
	// FollowerOptions.SnapshotEvery.
	Snapshot      string
	SnapshotEvery time.Duration
	// Settings are more lines of the consul block.
	Settings []string
}

// Tier is a running tier instance.
type Tier struct {
	*Server
	// Listen is where followers reach it: the address a follow line names.
	Listen string
	// Snapshot is its snapshot file, if it writes one.
	Snapshot string
	cf       Corefile
}

// StartTier starts a tier on free loopback ports, with the prometheus
// plugin, and waits until it is ready.
func StartTier(t testing.TB, o TierOptions) *Tier {
	t.Helper()
	tr := &Tier{Listen: fmt.Sprintf("127.0.0.1:%d", freeport.Port(t)), Snapshot: o.Snapshot}
	lines := []string{"address " + o.Address, "tier_listen " + tr.Listen}
	switch {
	case o.NoAuth:
		lines = append(lines, "tier_no_auth")
	case o.TokenFile != "":
		lines = append(lines, "tier_token_file "+o.TokenFile)
	}
	lines = append(lines, snapshotLine(o.Snapshot, o.SnapshotEvery)...)
	tr.cf = Corefile{Metrics: true, Consul: append(lines, o.Settings...)}
	tr.Server = Start(t, tr.cf.Build)
	return tr
}

// Restart starts the stopped or killed tier again on its ports, with its
// Corefile.
func (tr *Tier) Restart(t testing.TB) {
	t.Helper()
	tr.Server.Stop(t)
	tr.Server = StartOn(t, tr.Ports, tr.cf.Build)
}

// FollowerOptions say which tiers a follower follows and how.
type FollowerOptions struct {
	// Tiers are the follow line's addresses, in order.
	Tiers []string
	// TokenFile is follow_token_file; none when empty.
	TokenFile string
	// NodeName is node_name: what a prepared query's Near "_agent" means
	// here; the tier's when empty.
	NodeName string
	// Snapshot is the snapshot file; none when empty.
	Snapshot string
	// SnapshotEvery is the least time between its writes: 100ms when 0,
	// so that a test can restart from what was just served; the plugin's
	// default (10 s) when negative.
	SnapshotEvery time.Duration
	// Settings are more lines of the consul block.
	Settings []string
	// Ports are where it listens; every one picked free when nil.
	Ports *Ports
}

// Follower is a running follower instance.
type Follower struct {
	*Server
	Options FollowerOptions
	cf      Corefile
}

// FollowerCorefile is the Corefile of a follower, with the prometheus
// plugin.
func FollowerCorefile(o FollowerOptions) Corefile {
	lines := []string{"follow " + strings.Join(o.Tiers, " ")}
	if o.TokenFile != "" {
		lines = append(lines, "follow_token_file "+o.TokenFile)
	}
	if o.NodeName != "" {
		lines = append(lines, "node_name "+o.NodeName)
	}
	lines = append(lines, snapshotLine(o.Snapshot, o.SnapshotEvery)...)
	return Corefile{Metrics: true, Consul: append(lines, o.Settings...)}
}

// snapshotLine is the snapshot setting for a file written at least every
// (100ms when 0, the plugin's default when negative); none without a file.
func snapshotLine(path string, every time.Duration) []string {
	switch {
	case path == "":
		return nil
	case every < 0:
		return []string{"snapshot " + path}
	case every == 0:
		every = 100 * time.Millisecond
	}
	return []string{fmt.Sprintf("snapshot %s %s", path, every)}
}

// StartingAt orders tiers for a follower of node so that it reads
// tiers[first] first, and the others after it in their order: the plugin
// starts each node at the tier its node name hashes to (FNV-1a, modulo
// their number), so that a fleet spreads over its tiers; a test that needs
// a follower on a given tier orders them so.
func StartingAt(tiers []string, node string, first int) []string {
	h := fnv.New32a()
	h.Write([]byte(node))
	start := int(h.Sum32()&0x7fffffff) % len(tiers)
	out := make([]string, len(tiers))
	for i := range tiers {
		out[(start+i)%len(tiers)] = tiers[(first+i)%len(tiers)]
	}
	return out
}

// StartFollower starts a follower and waits until it is ready; it returns
// an error rather than failing the test, so that a benchmark starting many
// can report which did not come up.
func StartFollower(t testing.TB, o FollowerOptions) (*Follower, error) {
	t.Helper()
	f := &Follower{Options: o, cf: FollowerCorefile(o)}
	s, err := StartWith(t, Options{Ports: o.Ports}, f.cf.Build)
	if err != nil {
		return nil, fmt.Errorf("follower of %v: %w", o.Tiers, err)
	}
	f.Server = s
	return f, nil
}

// Restart stops the follower and starts it again on its ports, with its
// Corefile (and so its snapshot file), and waits until it is ready.
func (f *Follower) Restart(t testing.TB) error {
	t.Helper()
	f.Server.Stop(t)
	s, err := StartWith(t, Options{Ports: &f.Ports}, f.cf.Build)
	if err != nil {
		return fmt.Errorf("follower of %v restarted: %w", f.Options.Tiers, err)
	}
	f.Server = s
	return nil
}

// WriteToken writes a token file a tier or a follower reads, in a directory
// of the test's.
func WriteToken(t testing.TB, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tier.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Freeze stops CoreDNS with SIGSTOP: its sockets stay open, nothing answers,
// as a hung process.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freezing coredns: %v", err)
	}
	// A frozen process ignores the SIGTERM of Stop: thawed first, so that
	// the test's end stops it.
	t.Cleanup(func() { s.cmd.Process.Signal(syscall.SIGCONT) })
}

// Thaw resumes a frozen CoreDNS.
func (s *Server) Thaw(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("thawing coredns: %v", err)
	}
}

// Kill ends CoreDNS with SIGKILL, as a crash would (frozen or not). It may
// be called more than once.
func (s *Server) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

// MetricWhere sums the samples of the metric name whose labels contain
// every one of parts (`kind="garbage"`, a tier's port): for series labelled
// by values a test knows only in part. NaN when the metrics cannot be read.
func (s *Server) MetricWhere(name string, parts ...string) float64 {
	text, err := metrics.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		return math.NaN()
	}
	sum := 0.0
	for key, v := range metrics.Parse(text) {
		labels, ok := strings.CutPrefix(key, name)
		if !ok || (labels != "" && labels[0] != '{') {
			continue
		}
		matches := true
		for _, p := range parts {
			matches = matches && strings.Contains(labels, p)
		}
		if matches {
			sum += v
		}
	}
	return sum
}

// CPU is the processor time CoreDNS has used so far, user and system
// (utime + stime of /proc/<pid>/stat, in clock ticks of 10ms).
func (s *Server) CPU() (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.Pid()))
	if err != nil {
		return 0, fmt.Errorf("cpu time of coredns: %w", err)
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// follow it start at the state (field 3); utime and stime are 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	fields := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("cpu time of coredns: %d fields in /proc/%d/stat", len(fields), s.Pid())
	}
	ticks := 0
	for _, f := range fields[11:13] {
		n, err := strconv.Atoi(f)
		if err != nil {
			return 0, fmt.Errorf("cpu time of coredns: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
