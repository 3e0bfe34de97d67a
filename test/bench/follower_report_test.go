package bench

import (
	"fmt"
	"math"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
)

// followerReport formats TestFollowerFleet's results as markdown, for
// docs/fleet-cost.md.
func followerReport(b *followerBench, rows []*followerRow, whole *wholeResult, took time.Duration) string {
	var out strings.Builder
	kernel, _ := exec.Command("uname", "-r").Output()
	version, _ := exec.Command(consulagent.Binary(), "version").Output()
	consulVersion, _, _ := strings.Cut(string(version), "\n")
	fmt.Fprintf(&out, "Measured %s on %d cores (%s, Linux %s), %s, %s; %d services (%d watched by each tier, with `consul`), one Consul server, two client agents, a tier on each; the run took %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), fleetMemTotal(), strings.TrimSpace(string(kernel)),
		consulVersion, runtime.Version(), b.services, b.watched, took.Round(time.Second))

	fleetHeading(&out, "Followers: the servers' streams and propagation",
		"Followers are added between rows (none in the first: the tiers alone), follower i reading tier i mod 2 first. `streams`: the server's `consul.grpc.server.streams` (internal), settled, beside tiers x watched services. "+
			"`tier conns`: established connections to each tier's listener. Propagation: a registration or deregistration written to the server, timed from the write returning until each DNS server answers it (SRV), every server polled every `poll`; "+
			"`followers` are all followers' times, `last follower` the time until every follower answered, per change. Goal: last follower p99 <= max(100 ms, 1.5 x Consul DNS p99). `missed`: follower observations not shown within 10 s. "+
			"`(k asked)`: the same changes again with only k followers asked (and Consul's DNS and the tiers), since asking every server every poll takes a share of the cores the processes measured need.",
		"| N | streams (want) | tier conns | Consul DNS p50 / p99 ms | tiers p50 / p99 | followers p50 / p99 | last follower p50 / p99 | goal | missed | poll ms |",
		"|---:|---|---|---|---|---|---|---|---:|---:|")
	var timed []*followerRow
	for _, r := range rows {
		timed = append(timed, r)
		if r.sample != nil {
			timed = append(timed, r.sample)
		}
	}
	for _, r := range timed {
		label := fmt.Sprint(r.n)
		if r.asked > 0 {
			label = fmt.Sprintf("%d (%d asked)", r.n, r.asked)
		}
		goal := math.Max(100, 1.5*quantile(r.consul, 99))
		met := "met"
		switch {
		case r.n == 0:
			met = "-"
		case !(quantile(r.all, 99) <= goal):
			met = "**missed**"
		}
		fmt.Fprintf(&out, "| %s | %.0f (%.0f) | %s | %s | %s | %s | %s | %s (%.0f ms) | %d | %.1f |\n", label, r.streams, r.streamsWanted,
			strings.Trim(fmt.Sprint(r.conns), "[]"), p5099(r.consul), p5099(r.tiers), p5099(r.each), p5099(r.all), met, goal, r.missing, ms(r.poll))
	}

	fleetHeading(&out, "The tiers' cost per follower",
		"Summed over both tiers, from their `coredns_consul_tier_bytes_total` and `coredns_consul_tier_answers_total` by kind and their CPU (utime + stime in /proc/PID/stat, 10 ms ticks) over the changes above, then over an idle window. Bytes are the answers' wire bytes (envelope and compressed payload). "+
			"Per follower: the CPU beyond the N = 0 row (the tiers replicating Consul with no follower), divided by N. "+
			"`follower CPU`: what one change costs each follower (applying the delta, publishing), from all followers' CPU over the changes; on this machine the N followers share the two cores with everything else, so a change costs N times that here, which is what delays the answers at N = 50 above (in a fleet each follower has its node's CPU).",
		"| N | changes | answers per change (delta / none / whole) | bytes per change | per follower | tier CPU ms per change | per follower, µs | idle: tier CPU ms/s | per follower, µs/s | follower CPU ms per change, each | followers started in | follower RSS MB (median) |",
		"|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	base := rows[0]
	baseCPU, baseIdle := ms(base.cpuChanges)/float64(base.changes), ms(base.cpuIdle)/base.idle.Seconds()
	for _, r := range rows {
		c, n := float64(r.changes), float64(r.n)
		bytes := r.bytes["delta"] + r.bytes["none"] + r.bytes["whole"]
		cpu, idle := ms(r.cpuChanges)/c, ms(r.cpuIdle)/r.idle.Seconds()
		fmt.Fprintf(&out, "| %d | %d | %.2f / %.2f / %.2f | %.0f | %.0f | %.2f | %.0f | %.2f | %.0f | %.2f | %s | %.0f |\n", r.n, r.changes,
			r.answers["delta"]/c, r.answers["none"]/c, r.answers["whole"]/c, bytes/c, orNaN(bytes/c, n), cpu, orNaN((cpu-baseCPU)*1000, n),
			idle, orNaN((idle-baseIdle)*1000, n), orNaN(ms(r.followersCPU)/c, n), r.startTook.Round(100*time.Millisecond), r.followerRSS/1e6)
	}

	fleetHeading(&out, "Whole-state answers",
		"What a new follower (or one too far behind) costs tier 0: `GET /v1/follow?index=0` with the token, one at a time; bytes on the wire (envelope and the snapshot file's encoding), time to the last byte on loopback, the tier's CPU per answer.",
		"| watched services | answers (counted by the tier) | bytes | time p50 / max ms | tier CPU ms per answer |",
		"|---:|---|---:|---|---:|")
	if len(whole.took) > 0 {
		fmt.Fprintf(&out, "| %d | %d (%.0f) | %.0f | %.1f / %.1f | %.1f |\n", whole.watched, len(whole.took), whole.answersWhole, median(whole.bytes),
			quantile(whole.took, 50), quantile(whole.took, 100), ms(whole.cpu)/float64(len(whole.took)))
	}
	if r := whole.restart; r != nil {
		// The tiers' own work over the same time is not the restart's.
		cpu := ms(r.cpu) - baseIdle*r.took.Seconds()
		fmt.Fprintf(&out, "\nEvery follower restarted at once (N = %d, each with its snapshot file): %d ready within 1 s of its start, from the file; the tiers sent %.0f whole states (%.0f KB each) in %s, at most %.0f answers waiting for a transfer slot at once, for %.0f ms of tier CPU beyond their idle rate (%.1f ms each).\n",
			r.n, r.readyAtOnce, r.wholes, orNaN(r.bytes/1024, r.wholes), r.took.Round(time.Millisecond), r.peakWaiting, cpu, orNaN(cpu, r.wholes))
	}
	return out.String()
}

func orNaN(v, n float64) float64 {
	if n == 0 {
		return math.NaN()
	}
	return v / n
}

func p5099(d []time.Duration) string {
	return fmt.Sprintf("%.1f / %.1f", quantile(d, 50), quantile(d, 99))
}
