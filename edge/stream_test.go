package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// wrapConn wraps one conn the way WrapListener's Accept does.
func wrapConn(c net.Conn, o Options, datagram bool) *streamConn {
	return newStreamConn(c, newConfig(o), datagram, nil)
}

func TestStreamFraming(t *testing.T) {
	frames := [][]byte{
		msgBindingRequest(t),
		channelData(0x4000, []byte("hello"), true),
		msgAllocateWithIntegrity(t),
		channelData(0x7FFF, nil, true),
		msgSendIndication(t),
		channelData(0x4001, bytes.Repeat([]byte{0xAB}, 1200), true),
		msgBindingSuccess(t),
	}
	stream := bytes.Join(frames, nil)
	for _, chunk := range []int{1, 3, 7, 20, 64, 1500, len(stream)} {
		t.Run(fmt.Sprintf("segments of %d", chunk), func(t *testing.T) {
			counters := &Counters{}
			var inspected int
			c := wrapConn(&chunkConn{reads: chunked(stream, chunk)}, Options{
				Counters: counters,
				Screen:   func([]byte, net.Addr) []byte { inspected++; return nil },
			}, false)
			got, err := readFrames(c, DefaultMTU)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("final error %v, want EOF", err)
			}
			if len(got) != len(frames) {
				t.Fatalf("%d frames, want %d", len(got), len(frames))
			}
			for i := range frames {
				if !bytes.Equal(got[i], frames[i]) {
					t.Fatalf("frame %d = %x, want %x", i, got[i], frames[i])
				}
			}
			if inspected != 1 {
				t.Fatalf("Screen called %d times, want 1", inspected)
			}
			want := CounterValues{BindingRequests: 1, OtherRequests: 1, Indications: 1, Responses: 1,
				ChannelDataPackets: 3, ChannelDataBytes: 1205}
			if s := counters.Snapshot(); s != want {
				t.Fatalf("counters %+v\nwant     %+v", s, want)
			}
		})
	}
}

// TestStreamUnderPionSTUNConn checks what pion's readLoop sees: its
// STUNConn over the framed conn yields the frames unchanged.
func TestStreamUnderPionSTUNConn(t *testing.T) {
	frames := [][]byte{
		msgBindingRequest(t),
		channelData(0x4000, []byte("hello"), true),
		msgAllocateWithIntegrity(t),
	}
	c := wrapConn(&chunkConn{reads: chunked(bytes.Join(frames, nil), 5)}, Options{}, false)
	sc := turn.NewSTUNConn(c)
	buf := make([]byte, DefaultMTU)
	for i, want := range frames {
		n, _, err := sc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("frame %d = %x, want %x", i, buf[:n], want)
		}
	}
}

func TestStreamSmallReadBuffer(t *testing.T) {
	frames := [][]byte{msgBindingRequest(t), channelData(0x4000, []byte("hello"), true)}
	stream := bytes.Join(frames, nil)
	c := wrapConn(&chunkConn{reads: chunked(stream, 9)}, Options{}, false)
	got, err := readFrames(c, 3)
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.Join(got, nil), stream) {
		t.Fatal("stream not reassembled")
	}
	for _, g := range got {
		if len(g) > 3 {
			t.Fatalf("read %d bytes into a 3-byte buffer", len(g))
		}
	}
}

func TestStreamErrors(t *testing.T) {
	binding := msgBindingRequest(t)
	badAttrs := bytes.Clone(binding)
	badAttrs[stunHeaderSize+3] = 200 // FINGERPRINT length beyond the message
	tooLarge := bytes.Clone(binding[:20])
	tooLarge[2], tooLarge[3] = 0x06, 0x3C // 20+1596 = 1616 bytes
	tests := []struct {
		name   string
		stream []byte
		frames int // frames passed before the error
		err    error
		want   CounterValues
	}{
		{"garbage", []byte{0x80, 1, 2, 3, 4, 5, 6, 7, 8}, 0, ErrInvalidFrame,
			CounterValues{InvalidFrames: 1}},
		{"garbage after a frame", append(bytes.Clone(binding), 0xC0, 0, 0, 0), 1, ErrInvalidFrame,
			CounterValues{InvalidFrames: 1, BindingRequests: 1}},
		{"bad cookie", append([]byte{0, 1, 0, 0, 1, 2, 3, 4}, make([]byte, 12)...), 0, ErrInvalidFrame,
			CounterValues{InvalidFrames: 1}},
		{"STUN frame at MTU", tooLarge, 0, ErrFrameTooLarge, CounterValues{Oversized: 1}},
		{"ChannelData frame at MTU", []byte{0x40, 0, 0x06, 0x3C}, 0, ErrFrameTooLarge, CounterValues{Oversized: 1}},
		{"malformed attributes dropped, stream continues", append(badAttrs, binding...), 1, io.EOF,
			CounterValues{Malformed: 1, BindingRequests: 1}},
		{"truncated frame at EOF", binding[:24], 0, io.EOF, CounterValues{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counters := &Counters{}
			c := wrapConn(&chunkConn{reads: chunked(tt.stream, 7)}, Options{Counters: counters}, false)
			got, err := readFrames(c, DefaultMTU)
			if len(got) != tt.frames || !errors.Is(err, tt.err) {
				t.Fatalf("%d frames, %v; want %d, %v", len(got), err, tt.frames, tt.err)
			}
			if _, err2 := c.Read(make([]byte, 100)); !errors.Is(err2, tt.err) {
				t.Fatalf("error not sticky: %v", err2)
			}
			if s := counters.Snapshot(); s != tt.want {
				t.Fatalf("counters %+v\nwant     %+v", s, tt.want)
			}
		})
	}
}

func TestStreamDatagramMode(t *testing.T) {
	binding := msgBindingRequest(t)
	unpadded := channelData(0x4000, []byte("hello"), false)
	padded := channelData(0x4000, []byte("hello"), true)
	reads := [][]byte{
		unpadded,                                // padded for pion
		{0xC0, 1, 2, 3},                         // malformed: dropped, not fatal
		make([]byte, DefaultMTU),                // oversized: dropped
		append(bytes.Clone(binding), padded...), // two frames in one datagram
		append(bytes.Clone(binding), 0x80, 0),   // a frame then junk: junk dropped
		binding[:24],                            // truncated STUN
		channelData(0x4000, []byte("hi"), false)[:5],
	}
	counters := &Counters{}
	c := wrapConn(&chunkConn{reads: reads}, Options{Counters: counters}, true)
	got, err := readFrames(c, DefaultMTU)
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	want := [][]byte{padded, binding, padded, binding}
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d: %x", len(got), len(want), got)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d = %x, want %x", i, got[i], want[i])
		}
	}
	wantC := CounterValues{Malformed: 4, Oversized: 1, BindingRequests: 2, ChannelDataPackets: 2, ChannelDataBytes: 10}
	if s := counters.Snapshot(); s != wantC {
		t.Fatalf("counters %+v\nwant     %+v", s, wantC)
	}
}

func TestStreamWrite(t *testing.T) {
	inner := &chunkConn{}
	counters := &Counters{}
	c := wrapConn(inner, Options{Counters: counters}, false)
	cd := channelData(0x4000, []byte("abc"), true)
	for _, b := range [][]byte{cd, msgChannelBindDenied(t)} {
		if n, err := c.Write(b); err != nil || n != len(b) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if !bytes.Equal(inner.writes[0], cd) {
		t.Fatal("ChannelData modified")
	}
	m, err := checkWellFormed(inner.writes[1])
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, m); code != 403 {
		t.Fatalf("code %d, want 403", code)
	}
	if s := counters.Snapshot(); s.Rewritten403 != 1 {
		t.Fatalf("counters %+v", s)
	}
}

func TestStreamReadDoesNotAllocate(t *testing.T) {
	cd := channelData(0x4000, make([]byte, 1000), true)
	inner := &chunkConn{}
	c := wrapConn(inner, Options{Counters: &Counters{}}, false)
	buf := make([]byte, DefaultMTU)
	reads := make([][]byte, 0, 2)
	allocs := testing.AllocsPerRun(1000, func() {
		inner.reads = append(reads[:0], cd[:300], cd[300:])
		if n, err := c.Read(buf); err != nil || n != len(cd) {
			t.Fatalf("Read = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per frame", allocs)
	}
}

func BenchmarkStreamReadChannelData(b *testing.B) {
	cd := channelData(0x4000, make([]byte, 1200), true)
	inner := &chunkConn{}
	c := wrapConn(inner, Options{Counters: &Counters{}}, false)
	buf := make([]byte, DefaultMTU)
	reads := make([][]byte, 0, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(cd)))
	for b.Loop() {
		inner.reads = append(reads[:0], cd)
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIdleGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counters := &Counters{}
		srv, cli := net.Pipe()
		defer cli.Close()
		c := wrapConn(srv, Options{Counters: counters, IdleTimeout: 30 * time.Second}, false)
		defer c.Close()
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 100))
			done <- err
		}()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("closed early: %v", err)
		default:
		}
		time.Sleep(2 * time.Second)
		if err := <-done; !errors.Is(err, ErrIdleTimeout) {
			t.Fatalf("Read error %v, want ErrIdleTimeout", err)
		}
		if s := counters.Snapshot(); s.IdleClosed != 1 {
			t.Fatalf("counters %+v", s)
		}
	})
}

func TestIdleGuardSparesActiveConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counters := &Counters{}
		srv, cli := net.Pipe()
		defer cli.Close()
		c := wrapConn(srv, Options{Counters: counters, IdleTimeout: 30 * time.Second}, false)
		defer c.Close()
		go func() { _, _ = cli.Write(msgBindingRequest(t)) }()
		if _, err := c.Read(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		go func() { _, _ = cli.Write(msgBindingRequest(t)) }()
		if _, err := c.Read(make([]byte, 100)); err != nil {
			t.Fatalf("active conn closed: %v", err)
		}
		if s := counters.Snapshot(); s.IdleClosed != 0 {
			t.Fatalf("counters %+v", s)
		}
	})
}

// flakyListener fails Accept with errs, then accepts conns.
type flakyListener struct {
	mu     sync.Mutex
	errs   []error
	conns  []net.Conn
	closed chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	if len(l.conns) > 0 {
		c := l.conns[0]
		l.conns = l.conns[1:]
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *flakyListener) Close() error   { close(l.closed); return nil }
func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func TestAcceptRetriesResourceErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
		inner := &chunkConn{}
		fl := &flakyListener{errs: []error{emfile, emfile, syscall.ECONNABORTED}, conns: []net.Conn{inner}, closed: make(chan struct{})}
		l := WrapListener(fl, Options{Log: testutil.Logger(t)})
		c, err := l.Accept()
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		if c.(interface{ Unwrap() net.Conn }).Unwrap() != inner {
			t.Fatal("Unwrap does not return the accepted conn")
		}
		_ = c.Close()
		// Closed while Accept blocks: the error ends Accept.
		go func() { time.Sleep(time.Second); _ = l.Close() }()
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	})
}

func TestAcceptFatalError(t *testing.T) {
	fatal := errors.New("boom")
	fl := &flakyListener{errs: []error{fatal}, closed: make(chan struct{})}
	l := WrapListener(fl, Options{})
	if _, err := l.Accept(); !errors.Is(err, fatal) {
		t.Fatalf("Accept: %v", err)
	}
}

// TestTLSAcceptDoesNotHandshake: a client that connects and stays silent
// blocks neither Accept nor other clients; its first Read fails after the
// handshake timeout.
func TestTLSAcceptDoesNotHandshake(t *testing.T) {
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counters := &Counters{}
	l := WrapListener(tls.NewListener(tcp, &tls.Config{Certificates: []tls.Certificate{testutil.SelfSigned(t).TLS}}),
		Options{Counters: counters, HandshakeTimeout: 200 * time.Millisecond, Log: testutil.Logger(t)})
	defer l.Close()

	silent, err := net.Dial("tcp4", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("Accept blocked on a silent client")
	}
	if c == nil {
		t.Fatal("Accept failed")
	}
	defer c.Close()
	if _, ok := c.(interface{ Unwrap() net.Conn }).Unwrap().(*tls.Conn); !ok {
		t.Fatal("Unwrap is not the *tls.Conn")
	}
	if c.RemoteAddr().String() != silent.LocalAddr().String() {
		t.Fatalf("RemoteAddr %v, want %v", c.RemoteAddr(), silent.LocalAddr())
	}
	start := time.Now()
	if _, err := c.Read(make([]byte, 100)); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read error %v, want handshake deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("handshake timeout took %v", d)
	}
	if s := counters.Snapshot(); s.HandshakeFailures != 1 {
		t.Fatalf("counters %+v", s)
	}
}
