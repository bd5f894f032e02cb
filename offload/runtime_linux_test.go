//go:build linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64)

package offload

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestRunTime measures the program's run time per packet (the kernel's
// BPF statistics, enabled for the test's duration with BPF_ENABLE_STATS)
// while relaying 200-byte payloads each way through the veth lab, for TC
// and generic XDP, IPv4. The figures are logged, not checked: they depend
// on the machine.
func TestRunTime(t *testing.T) {
	requireLab(t)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Skipf("BPF run-time statistics unavailable: %v", err)
	}
	defer stats.Close()
	lab := newVethLab(t)
	fam := families()[0]
	s := lab.sockets(t, fam)
	const n = 2000
	for _, mode := range []string{ModeTC, ModeXDPGeneric} {
		t.Run(mode, func(t *testing.T) {
			off := openIn(t, lab.f, Options{Mode: mode, Interfaces: []string{"fer0"}})
			ch := Channel{Client: fam.clientAP, Listener: fam.listener, Relay: fam.relay, Peer: fam.peerAP,
				Number: 0x4000, Expires: time.Now().Add(time.Hour)}
			mustPut(t, off, ch)
			tc, xdp := off.programs()
			prog := tc
			if mode != ModeTC {
				prog = xdp
			}
			before, err := prog.Stats()
			if err != nil {
				t.Skipf("program stats: %v", err)
			}
			data := payload(200)
			cd := channelData(0x4000, data, 0)
			buf := make([]byte, 2048)
			start := time.Now()
			for i := 0; i < n; i++ {
				send(t, s.client, cd, fam.listener)
				_ = s.peer.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, _, err := s.peer.ReadFromUDPAddrPort(buf); err != nil {
					t.Fatalf("client→peer %d: %v", i, err)
				}
				send(t, s.peer, data, fam.relay)
				_ = s.client.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, _, err := s.client.ReadFromUDPAddrPort(buf); err != nil {
					t.Fatalf("peer→client %d: %v", i, err)
				}
			}
			took := time.Since(start)
			after, err := prog.Stats()
			if err != nil {
				t.Fatal(err)
			}
			runs := after.RunCount - before.RunCount
			rt := after.Runtime - before.Runtime
			if runs < 2*n {
				t.Fatalf("program ran %d times for %d packets", runs, 2*n)
			}
			c := mustCounters(t, off, ch)
			if c.ToPeerPackets != n || c.FromPeerPackets != n {
				t.Errorf("Counters %+v, want %d each way", c, n)
			}
			t.Logf("%s: %d runs, %v run time: %.0f ns per packet (%d round trips in %v)",
				mode, runs, rt, float64(rt.Nanoseconds())/float64(runs), n, took.Round(time.Millisecond))
		})
	}
}
