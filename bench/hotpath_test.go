package bench

import (
	"io"
	"net"
	"testing"
	"time"
)

// loopbackFlow returns a flow whose client socket talks straight to its
// echo peer socket: what the flow sends comes back unchanged, as if the
// server relayed both ways, with no server in between.
func loopbackFlow(t *testing.T, tcp bool, batch int) (f *flow, serverSide func()) {
	t.Helper()
	if tcp {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		// An unused peer socket: over TCP the "server" echoes the stream.
		peer := dialUDPPair(t)
		f = newFlow(&session{conn: c, tcp: true, frames: newFramer(c)}, peer.LocalAddr().(*net.UDPAddr).AddrPort(), peer, DefaultSize, batch)
		buf := make([]byte, batch*f.frameLen)
		t.Cleanup(func() { f.close(); _ = srv.Close() })
		return f, func() {
			// Echo exactly one batch of frames back on the stream.
			if _, err := io.ReadFull(srv, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	client, peer := connectedPair(t)
	f = newFlow(&session{conn: client}, peer.LocalAddr().(*net.UDPAddr).AddrPort(), peer, DefaultSize, batch)
	t.Cleanup(f.close)
	return f, func() {
		for echoed := uint64(0); echoed < uint64(batch); {
			before := f.peerRx.Load()
			if err := f.echoOnce(); err != nil {
				t.Fatal(err)
			}
			echoed += f.peerRx.Load() - before
		}
	}
}

// connectedPair returns two UDP sockets on 127.0.0.1 connected to each
// other.
func connectedPair(t testing.TB) (a, b *net.UDPConn) {
	t.Helper()
	a0, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, a0.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	aAddr := a0.LocalAddr().(*net.UDPAddr)
	_ = a0.Close() // rebind the same port as a connected socket
	a, err = net.DialUDP("udp4", aAddr, b.LocalAddr().(*net.UDPAddr))
	if err != nil {
		_ = b.Close()
		t.Fatal(err)
	}
	return a, b
}

func dialUDPPair(t testing.TB) *net.UDPConn {
	t.Helper()
	a, b := connectedPair(t)
	_ = a.Close()
	return b
}

// TestHotPathAllocs checks that a send, an echo and a receive of a batch of
// ChannelData allocate nothing: blocking and polled over UDP, and over TCP.
// (The echo here is the peer socket itself, connected to the client: it
// reflects the ChannelData unchanged, so only the counts are meaningful.)
func TestHotPathAllocs(t *testing.T) {
	const batch = 8
	tests := []struct {
		name   string
		tcp    bool
		polled bool
	}{
		{"udp blocking", false, false},
		{"udp polled", false, true},
		{"tcp", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, echo := loopbackFlow(t, tt.tcp, batch)
			cycle := func() {
				f.send(batch)
				want := f.sent.Load()
				if tt.polled {
					for f.peerRx.Load() < want {
						f.pollEcho()
					}
					for f.received.Load() < want {
						f.pollRecv()
					}
					return
				}
				echo()
				for f.received.Load() < want {
					if _, err := f.recv(); err != nil {
						t.Fatal(err)
					}
				}
			}
			cycle() // warm up x/net's pools and the framer
			allocs := testing.AllocsPerRun(200, cycle)
			if f.invalid.Load()+f.other.Load()+f.sendErrs.Load()+f.peerErrs.Load() != 0 {
				t.Fatalf("invalid %d, other %d, send errors %d, peer errors %d", f.invalid.Load(), f.other.Load(), f.sendErrs.Load(), f.peerErrs.Load())
			}
			// 202 cycles: ours, AllocsPerRun's warm-up and its 200 runs.
			if f.hist.n != f.received.Load() || f.received.Load() != 202*batch {
				t.Fatalf("received %d, recorded %d, want %d", f.received.Load(), f.hist.n, 202*batch)
			}
			if raceEnabled {
				t.Skipf("%.1f allocations per cycle under the race detector (sync.Pool drops items): not checked", allocs)
			}
			if allocs != 0 {
				t.Fatalf("%.1f allocations per send+echo+receive of %d packets, want 0", allocs, batch)
			}
		})
	}
}

func BenchmarkHotPathUDP(b *testing.B) {
	b.ReportAllocs()
	const batch = 32
	client, peer := connectedPair(b)
	f := newFlow(&session{conn: client}, peer.LocalAddr().(*net.UDPAddr).AddrPort(), peer, DefaultSize, batch)
	defer f.close()
	for b.Loop() {
		f.send(batch)
		for echoed := uint64(0); echoed < batch; {
			before := f.peerRx.Load()
			if err := f.echoOnce(); err != nil {
				b.Fatal(err)
			}
			echoed += f.peerRx.Load() - before
		}
		for f.received.Load() < f.sent.Load() {
			if _, err := f.recv(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/packet")
}

func TestKernelReceiveStamps(t *testing.T) {
	a, b := connectedPair(t)
	defer a.Close()
	defer b.Close()
	if err := enableTimestamps(b); err != nil {
		t.Fatal(err)
	}
	bc := newBatchConn(b, 4, 64)
	before := time.Now().UnixNano()
	if _, err := a.Write([]byte("stamp me")); err != nil {
		t.Fatal(err)
	}
	n, err := bc.read()
	if err != nil || n != 1 {
		t.Fatalf("read = %d, %v", n, err)
	}
	after := time.Now().UnixNano()
	if at := bc.stamp(0); at < before-int64(time.Millisecond) || at > after {
		t.Fatalf("kernel stamp %d outside [%d, %d]", at, before, after)
	}
	if string(bc.received(0)) != "stamp me" {
		t.Fatalf("received %q", bc.received(0))
	}
	// Nothing queued: poll returns at once with nothing.
	if n, err := bc.poll(); n != 0 || err != nil {
		t.Fatalf("poll of an empty socket = %d, %v", n, err)
	}
}
