package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Mode selects what Run measures.
type Mode string

const (
	// ModeRelay relays ChannelData through N allocations to the echo peers.
	ModeRelay Mode = "relay"
	// ModeAllocs opens and releases allocations as fast as it can.
	ModeAllocs Mode = "allocs"
	// ModeIdle opens N allocations (each with a permission and a channel),
	// holds them idle for Duration and reports the server's RSS growth per
	// allocation.
	ModeIdle Mode = "idle"
)

// Limits that keep a run bounded.
const (
	// MaxDuration caps Config.Duration: permissions last 5 minutes and the
	// generator does not refresh them.
	MaxDuration = 4 * time.Minute
	// MaxAllocations caps Config.Allocations in relay and allocs modes
	// (a relayed allocation is two sockets and two or three goroutines
	// here).
	MaxAllocations = 4096
	// MaxIdleAllocations caps Config.Allocations in idle mode (one socket
	// each, no buffers): one local address's ephemeral port range.
	MaxIdleAllocations = 65536
	// MinSize is the smallest payload: the send time, a sequence number
	// and the wait at the echo peer, 8 bytes each.
	MinSize = stampSize
	// MaxSize keeps a ChannelData message under pion's 1600-byte inbound MTU.
	MaxSize = 1400
	// maxBatch is the most messages one sendmmsg/recvmmsg moves.
	maxBatch = 64
)

// Config is one benchmark run.
type Config struct {
	// Server is the TURN server's HOST:PORT.
	Server string
	// Transport is "udp" or "tcp" (TCP carries the control connection and
	// the client-side ChannelData; relayed transport is always UDP).
	Transport string
	// Mode is ModeRelay, ModeAllocs or ModeIdle.
	Mode Mode
	// Allocations is how many allocations relay traffic (ModeRelay) or are
	// held idle (ModeIdle), or how many clients open allocations
	// concurrently (ModeAllocs).
	Allocations int
	// Size is the ChannelData payload size in bytes.
	Size int
	// Rate is the offered packets per second per allocation; 0 sends as
	// fast as Window allows.
	Rate int
	// Window is the outstanding packets per allocation when Rate is 0.
	Window int
	// Tick is the pacing interval: each allocation's due packets go out
	// in one sendmmsg per tick.
	Tick time.Duration
	// IO picks how rate mode drives the sockets: IOPolled (one goroutine
	// per core sends, echoes and receives every tick), IOBlocking (a
	// goroutine blocked on every socket) or, empty or IOAuto, polled for
	// UDP at pollMin..pollMax packets per allocation per tick.
	IO string
	// Duration bounds the measured phase (ModeIdle: how long the
	// allocations are held before RSS is read).
	Duration time.Duration
	// Count, when positive, also bounds the run: total packets sent
	// (ModeRelay) or allocations opened (ModeAllocs).
	Count int
	// User and Password are a static long-term credential; with Secret,
	// Run mints a TURN REST credential for User instead.
	User, Password, Secret string
	// Realm is the realm to expect; empty takes the server's.
	Realm string
	// ServerPID, when positive, is sampled from /proc for CPU and RSS.
	ServerPID int
	// Cgroup, when set, is a cgroup directory (v2 with cpu.stat, or v1
	// cpuacct) whose CPU time Run reports per packet or allocation, with the
	// kernel's ksoftirqd threads' time beside it. Put the server and the
	// generator in it to count everything both cost, including kernel work
	// done in either one's context.
	Cgroup string
	// LocalIP, when valid, is the address the client sockets and echo
	// peers bind to (ModeAllocs against an IPv4 loopback server keeps its
	// own 127/8 sources). A generator on its own address draws ephemeral
	// ports apart from the server's relays.
	LocalIP netip.Addr
	// SourceNet, when valid (IPv4, at most /30), gives ModeAllocs a new
	// source address from this prefix for every attempt, as it does on its
	// own against an IPv4 loopback server; the machine must take them as
	// local (e.g. `ip route add local 198.19.0.0/16 dev lo`).
	SourceNet netip.Prefix
	// AllowRemote permits a Server outside 127.0.0.0/8 and ::1.
	AllowRemote bool
	// SetupTimeout bounds opening (and closing) the allocations.
	SetupTimeout time.Duration
}

// Config.IO values.
const (
	IOAuto     = "auto"
	IOPolled   = "polled"
	IOBlocking = "blocking"
)

// Defaults for zero Config fields.
const (
	DefaultAllocations  = 20
	DefaultSize         = 200
	DefaultRate         = 500
	DefaultWindow       = 32
	DefaultTick         = 5 * time.Millisecond
	DefaultDuration     = 10 * time.Second
	DefaultSetupTimeout = 30 * time.Second
)

// withDefaults fills zero fields. Rate is left alone: 0 means max mode.
func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = "udp"
	}
	if c.Mode == "" {
		c.Mode = ModeRelay
	}
	if c.Allocations == 0 {
		c.Allocations = DefaultAllocations
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.SetupTimeout == 0 {
		c.SetupTimeout = DefaultSetupTimeout
		if c.Mode == ModeIdle {
			// About 5 ms per allocation covers a slow server; 20,000 get 100 s.
			c.SetupTimeout = max(c.SetupTimeout, time.Duration(c.Allocations)*5*time.Millisecond)
		}
	}
	return c
}

// validate checks a Config with defaults applied and resolves the server.
func (c Config) validate() (netip.AddrPort, error) {
	var errs []error
	switch c.Transport {
	case "udp", "tcp":
	default:
		errs = append(errs, fmt.Errorf("transport %q: want udp or tcp", c.Transport))
	}
	maxAllocs := MaxAllocations
	switch c.Mode {
	case ModeRelay, ModeAllocs:
	case ModeIdle:
		maxAllocs = MaxIdleAllocations
	default:
		errs = append(errs, fmt.Errorf("mode %q: want relay, allocs or idle", c.Mode))
	}
	if c.Allocations < 1 || c.Allocations > maxAllocs {
		errs = append(errs, fmt.Errorf("allocations %d: want 1..%d in %s mode", c.Allocations, maxAllocs, c.Mode))
	}
	if c.Size < MinSize || c.Size > MaxSize {
		errs = append(errs, fmt.Errorf("size %d: want %d..%d bytes", c.Size, MinSize, MaxSize))
	}
	if c.Rate < 0 || c.Rate > 1_000_000 {
		errs = append(errs, fmt.Errorf("rate %d: want 0 (max) ..1000000 packets/s per allocation", c.Rate))
	}
	if c.Window < 1 || c.Window > 4096 {
		errs = append(errs, fmt.Errorf("window %d: want 1..4096", c.Window))
	}
	switch c.IO {
	case "", IOAuto, IOBlocking:
	case IOPolled:
		if c.Transport != "udp" || c.Rate == 0 {
			errs = append(errs, fmt.Errorf("io polled: wants udp and a fixed --rate"))
		}
	default:
		errs = append(errs, fmt.Errorf("io %q: want auto, polled or blocking", c.IO))
	}
	if c.Tick < 100*time.Microsecond || c.Tick > time.Second {
		errs = append(errs, fmt.Errorf("tick %s: want 100µs..1s", c.Tick))
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		errs = append(errs, fmt.Errorf("duration %s: want >0 and <= %s", c.Duration, MaxDuration))
	}
	if c.Count < 0 || (c.Count > 0 && c.Count < c.Allocations) {
		errs = append(errs, fmt.Errorf("count %d: want 0 (no limit) or >= allocations (%d)", c.Count, c.Allocations))
	}
	if c.User == "" && c.Secret == "" {
		errs = append(errs, errors.New("credentials: set a user and password, or a secret"))
	}
	if c.Secret == "" && c.Password == "" && c.User != "" {
		errs = append(errs, fmt.Errorf("user %q: no password", c.User))
	}
	if c.ServerPID < 0 {
		errs = append(errs, fmt.Errorf("server pid %d: want > 0", c.ServerPID))
	}
	if c.SourceNet.IsValid() && (!c.SourceNet.Addr().Is4() || c.SourceNet.Bits() > 30) {
		errs = append(errs, fmt.Errorf("source net %s: want an IPv4 prefix of at most /30", c.SourceNet))
	}
	if err := errors.Join(errs...); err != nil {
		return netip.AddrPort{}, err
	}
	server, err := resolveServer(c.Server, c.AllowRemote)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if c.LocalIP.IsValid() {
		if c.LocalIP.Unmap().Is4() != server.Addr().Is4() {
			return netip.AddrPort{}, fmt.Errorf("local ip %s and server %s: not the same address family", c.LocalIP, server)
		}
		if server.Addr().IsLoopback() && !c.LocalIP.IsLoopback() {
			return netip.AddrPort{}, fmt.Errorf("local ip %s cannot reach loopback server %s: want a loopback address such as 127.0.0.2", c.LocalIP, server)
		}
	}
	if c.SourceNet.IsValid() && !server.Addr().Is4() {
		return netip.AddrPort{}, fmt.Errorf("source net %s and server %s: not the same address family", c.SourceNet, server)
	}
	return server, nil
}

// resolveServer resolves HOST:PORT to one address and applies the loopback
// rule.
func resolveServer(server string, allowRemote bool) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server %q: %w", server, err)
	}
	ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server %q: %w", server, err)
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("server %q: port 0", server)
	}
	if !allowRemote && !ap.Addr().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("server %q resolves to %s, not loopback: pass AllowRemote (--allow-remote) to load a remote server", server, ap.Addr())
	}
	return ap, nil
}

// Validate reports what is wrong with c, zero fields taking their defaults;
// it resolves Server and applies the loopback rule. Run validates too.
func (c Config) Validate() error {
	_, err := c.withDefaults().validate()
	return err
}

// Polling bounds: below pollMin packets per allocation per tick, polling
// would mostly find empty sockets; above pollMax, a tick's worth waiting in
// the sockets risks their buffers.
const (
	pollMin = 0.5
	pollMax = 32
)

// polled reports whether rate mode drives the flows by polling every tick
// (UDP; by default at pollMin..pollMax packets per allocation per tick)
// rather than with goroutines blocked on every socket. Polling costs the
// least at moderate rates; near saturation, where a tick's work outlasts the
// tick, blocking goroutines keep up better.
func (c Config) polled() bool {
	if c.Transport != "udp" || c.Rate == 0 {
		return false
	}
	switch c.IO {
	case IOPolled:
		return true
	case IOBlocking:
		return false
	}
	perTick := float64(c.Rate) * c.Tick.Seconds()
	return perTick >= pollMin && perTick <= pollMax
}
