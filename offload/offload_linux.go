//go:build linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64)

package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Offload is the loaded program and its maps, attached to interfaces.
// Its methods are safe for concurrent use.
type Offload struct {
	log *slog.Logger

	mu       sync.Mutex
	objs     *relayObjects // nil once closed
	links    []link.Link
	attached []Attachment
	max      uint32
	slots    map[relayC2pKey]uint32 // the counters slot of each installed channel
	free     []uint32
	next     uint32
}

// Supported reports whether this process can load BPF programs: nil when
// it can, else an error saying why.
func Supported() error {
	if err := removeMemlock(); err != nil {
		return err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "Dual MIT/GPL",
	})
	if err != nil {
		return explainLoad("loading a trivial BPF program", err)
	}
	return prog.Close()
}

// removeMemlock lifts RLIMIT_MEMLOCK where the kernel still charges BPF
// memory to it (before 5.11). cilium/ebpf probes by creating a map; without
// CAP_BPF that fails too, and raising the limit then fails for want of
// CAP_SYS_RESOURCE: the error a user needs is the missing capabilities.
func removeMemlock() error {
	err := rlimit.RemoveMemlock()
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("offload: %w (needs root, or CAP_BPF and CAP_NET_ADMIN)", err)
	}
	return fmt.Errorf("offload: removing the memlock limit: %w", err)
}

// explainLoad wraps a load error with what it likely means.
func explainLoad(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission):
		return fmt.Errorf("offload: %s: %w (needs root, or CAP_BPF and CAP_NET_ADMIN)", what, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("offload: %s: %w (kernel too old or built without BPF)", what, err)
	}
	return fmt.Errorf("offload: %s: %w", what, err)
}

// Open loads the program and attaches it to o.Interfaces, in the network
// namespace of the calling thread. On any failure it detaches what it
// attached and returns an error saying why.
func Open(o Options) (*Offload, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mode := o.Mode
	if mode == "" {
		mode = ModeAuto
	}
	switch mode {
	case ModeAuto, ModeXDP, ModeXDPGeneric, ModeTC:
	case ModeOff:
		return nil, ErrOff
	default:
		return nil, fmt.Errorf("offload: unknown mode %q (want auto, xdp, xdp-generic, tc or off)", o.Mode)
	}
	if len(o.Interfaces) == 0 {
		return nil, errors.New("offload: no interfaces to attach to")
	}
	maxEntries := o.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMaxEntries
	}
	if maxEntries < 0 || maxEntries > 1<<24 {
		return nil, fmt.Errorf("offload: MaxEntries %d outside 1-%d", maxEntries, 1<<24)
	}
	ifaces := make([]*net.Interface, len(o.Interfaces))
	for i, name := range o.Interfaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("offload: interface %q: %w", name, err)
		}
		ifaces[i] = ifi
	}

	if err := removeMemlock(); err != nil {
		return nil, err
	}
	spec, err := loadRelay()
	if err != nil {
		return nil, fmt.Errorf("offload: reading the embedded BPF object: %w", err)
	}
	for _, name := range []string{relayMapC2p, relayMapP2c, relayMapCounters} {
		spec.Maps[name].MaxEntries = uint32(maxEntries)
	}
	objs := new(relayObjects)
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("offload: the kernel's verifier refused the program: %+v", ve)
		}
		return nil, explainLoad("loading the BPF programs", err)
	}
	off := &Offload{
		log:   log,
		objs:  objs,
		max:   uint32(maxEntries),
		slots: make(map[relayC2pKey]uint32),
	}
	for _, ifi := range ifaces {
		if err := off.attach(ifi, mode); err != nil {
			_ = off.Close()
			return nil, err
		}
	}
	return off, nil
}

// attach attaches the program to ifi in mode.
func (o *Offload) attach(ifi *net.Interface, mode string) error {
	tc := func() error {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifi.Index,
			Program:   o.objs.RelayTc,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("offload: attaching tc (tcx) to %s: %w (needs Linux 6.6 or later)", ifi.Name, err)
			}
			return explainLoad("attaching tc (tcx) to "+ifi.Name, err)
		}
		o.added(l, ifi.Name, ModeTC)
		return nil
	}
	xdp := func(flags link.XDPAttachFlags, name string) error {
		l, err := link.AttachXDP(link.XDPOptions{Program: o.objs.RelayXdp, Interface: ifi.Index, Flags: flags})
		if err != nil {
			return explainLoad("attaching "+name+" to "+ifi.Name, err)
		}
		o.added(l, ifi.Name, name)
		return nil
	}
	switch mode {
	case ModeTC:
		return tc()
	case ModeXDPGeneric:
		return xdp(link.XDPGenericMode, "xdp-generic")
	case ModeXDP:
		if why := nativeXDPUnfit(ifi); why != "" {
			o.log.Info("offload: using generic XDP", "interface", ifi.Name, "why", why)
			return xdp(link.XDPGenericMode, "xdp-generic")
		}
		err := xdp(link.XDPDriverMode, "xdp")
		if err == nil {
			return nil
		}
		o.log.Info("offload: native XDP unavailable, using generic XDP", "interface", ifi.Name, "err", err)
		return xdp(link.XDPGenericMode, "xdp-generic")
	default: // auto
		why := nativeXDPUnfit(ifi)
		if v4, v6 := Forwarding(ifi.Name); why == "" && !(v4 && v6) {
			why = "IP forwarding is off on it (XDP's route lookup needs it; TC does without)"
		}
		if why != "" {
			o.log.Info("offload: using tc", "interface", ifi.Name, "why", why)
			return tc()
		}
		err := xdp(link.XDPDriverMode, "xdp")
		if err == nil {
			return nil
		}
		o.log.Info("offload: native XDP unavailable, using tc", "interface", ifi.Name, "err", err)
		return tc()
	}
}

// nativeXDPUnfit says why native XDP does not work on ifi, or "".
func nativeXDPUnfit(ifi *net.Interface) string {
	if ifi.Flags&net.FlagLoopback != 0 {
		return "loopback"
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, ifi.Name)
	if err != nil {
		return ""
	}
	if drv := unix.ByteSliceToString(info.Driver[:]); drv == "veth" {
		return "veth (native XDP sends back only when the peer has NAPI)"
	}
	return ""
}

// Forwarding reports whether IP forwarding is on for the interface, per
// family (IPv6 counts as on where the kernel has none), read in the
// calling thread's network namespace. XDP's route lookups need it.
func Forwarding(name string) (v4, v6 bool) {
	on := func(path string, missing bool) bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return missing
		}
		return len(b) > 0 && b[0] == '1'
	}
	return on("/proc/sys/net/ipv4/conf/"+name+"/forwarding", false),
		on("/proc/sys/net/ipv6/conf/"+name+"/forwarding", true)
}

func (o *Offload) added(l link.Link, name, mode string) {
	o.links = append(o.links, l)
	o.attached = append(o.attached, Attachment{Interface: name, Mode: mode})
	o.log.Info("offload: attached", "interface", name, "mode", mode)
}

// Attached lists the interfaces the program is attached to and how.
func (o *Offload) Attached() []Attachment {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Attachment(nil), o.attached...)
}

// be16 returns v as it lies in memory in network byte order, read in the
// host's byte order: the representation of ports in the maps.
func be16(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}

func addr16(a netip.Addr) [16]uint8 {
	return a.Unmap().As16()
}

func c2pKeyOf(ch Channel) relayC2pKey {
	return relayC2pKey{
		Client:       addr16(ch.Client.Addr()),
		Listener:     addr16(ch.Listener.Addr()),
		ClientPort:   be16(ch.Client.Port()),
		ListenerPort: be16(ch.Listener.Port()),
		Channel:      be16(ch.Number),
	}
}

// monotonicNs converts t to CLOCK_MONOTONIC nanoseconds, the clock of
// bpf_ktime_get_ns; zero is never.
func monotonicNs(t time.Time) (uint64, error) {
	if t.IsZero() {
		return math.MaxUint64, nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("offload: reading CLOCK_MONOTONIC: %w", err)
	}
	ns := ts.Nano() + time.Until(t).Nanoseconds()
	if ns < 0 {
		return 0, nil
	}
	return uint64(ns), nil
}

// Put installs ch, both directions, or replaces its entries: to refresh
// Expires, or to move the channel to another peer. The channel keeps its
// counters.
func (o *Offload) Put(ch Channel) error {
	if err := checkChannel(ch); err != nil {
		return err
	}
	expires, err := monotonicNs(ch.Expires)
	if err != nil {
		return err
	}
	k := c2pKeyOf(ch)
	pk := relayP2cKey{
		Peer:      addr16(ch.Peer.Addr()),
		Relay:     addr16(ch.Relay.Addr()),
		PeerPort:  be16(ch.Peer.Port()),
		RelayPort: be16(ch.Relay.Port()),
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return ErrClosed
	}
	slot, had := o.slots[k]
	if !had {
		if slot, err = o.allocSlot(); err != nil {
			return err
		}
	}
	var old relayC2pVal
	if err := o.objs.C2p.Lookup(&k, &old); err == nil {
		oldPk := relayP2cKey{Peer: old.Peer, Relay: old.Relay, PeerPort: old.PeerPort, RelayPort: old.RelayPort}
		if oldPk != pk {
			o.deleteP2c(oldPk, old.Slot)
		}
	}
	pv := relayP2cVal{
		Listener:     addr16(ch.Listener.Addr()),
		Client:       addr16(ch.Client.Addr()),
		ListenerPort: be16(ch.Listener.Port()),
		ClientPort:   be16(ch.Client.Port()),
		Channel:      be16(ch.Number),
		Slot:         slot,
		ExpiresNs:    expires,
	}
	v := relayC2pVal{
		Relay:     pk.Relay,
		Peer:      pk.Peer,
		RelayPort: pk.RelayPort,
		PeerPort:  pk.PeerPort,
		Slot:      slot,
		ExpiresNs: expires,
	}
	if err := o.objs.P2c.Put(&pk, &pv); err != nil {
		if !had {
			o.free = append(o.free, slot)
		}
		return fmt.Errorf("offload: writing the peer→client entry of channel %#x: %w", ch.Number, err)
	}
	if err := o.objs.C2p.Put(&k, &v); err != nil {
		o.deleteP2c(pk, slot)
		if !had {
			o.free = append(o.free, slot)
		}
		return fmt.Errorf("offload: writing the client→peer entry of channel %#x: %w", ch.Number, err)
	}
	o.slots[k] = slot
	return nil
}

// allocSlot takes a counters slot and zeroes it.
func (o *Offload) allocSlot() (uint32, error) {
	var slot uint32
	if n := len(o.free); n > 0 {
		slot = o.free[n-1]
		o.free = o.free[:n-1]
	} else if o.next < o.max {
		slot = o.next
		o.next++
	} else {
		return 0, fmt.Errorf("offload: all %d channel entries in use", o.max)
	}
	if err := o.objs.Counters.Put(slot, relayChanCounters{}); err != nil {
		o.free = append(o.free, slot)
		return 0, fmt.Errorf("offload: zeroing counters slot %d: %w", slot, err)
	}
	return slot, nil
}

// deleteP2c deletes the peer→client entry pk if it still belongs to the
// channel with slot (another channel may have taken the key since).
func (o *Offload) deleteP2c(pk relayP2cKey, slot uint32) {
	var pv relayP2cVal
	if err := o.objs.P2c.Lookup(&pk, &pv); err == nil && pv.Slot == slot {
		_ = o.objs.P2c.Delete(&pk)
	}
}

// Delete removes ch's entries, both directions; a channel that is not
// installed is not an error. Read its Counters first: they go with it.
func (o *Offload) Delete(ch Channel) error {
	k := c2pKeyOf(ch)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return ErrClosed
	}
	var old relayC2pVal
	err := o.objs.C2p.Lookup(&k, &old)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("offload: reading the client→peer entry of channel %#x: %w", ch.Number, err)
	}
	if err := o.objs.C2p.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("offload: deleting the client→peer entry of channel %#x: %w", ch.Number, err)
	}
	o.deleteP2c(relayP2cKey{Peer: old.Peer, Relay: old.Relay, PeerPort: old.PeerPort, RelayPort: old.RelayPort}, old.Slot)
	if slot, ok := o.slots[k]; ok {
		delete(o.slots, k)
		o.free = append(o.free, slot)
	}
	return nil
}

// Counters returns ch's counters (ErrNotInstalled when it is not
// installed). Only Client, Listener and Number identify the channel.
func (o *Offload) Counters(ch Channel) (Counters, error) {
	k := c2pKeyOf(ch)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return Counters{}, ErrClosed
	}
	slot, ok := o.slots[k]
	if !ok {
		return Counters{}, fmt.Errorf("%w: channel %#x of %v", ErrNotInstalled, ch.Number, ch.Client)
	}
	var c relayChanCounters
	if err := o.objs.Counters.Lookup(slot, &c); err != nil {
		return Counters{}, fmt.Errorf("offload: reading counters slot %d: %w", slot, err)
	}
	return Counters{
		ToPeerPackets: c.ToPeerPackets, ToPeerBytes: c.ToPeerBytes,
		FromPeerPackets: c.FromPeerPackets, FromPeerBytes: c.FromPeerBytes,
	}, nil
}

// Stats returns the program's counters summed over CPUs.
func (o *Offload) Stats() (Stats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return Stats{}, ErrClosed
	}
	var s Stats
	for i, f := range statFields(&s) {
		var per []uint64
		if err := o.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("offload: reading stat %d: %w", i, err)
		}
		for _, v := range per {
			*f += v
		}
	}
	return s, nil
}

// Close detaches the program and frees the maps. It is idempotent.
func (o *Offload) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return nil
	}
	var errs []error
	for i, l := range o.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("offload: detaching from %s: %w", o.attached[i].Interface, err))
		}
	}
	if err := o.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("offload: freeing the BPF objects: %w", err))
	}
	o.objs, o.links, o.attached, o.slots, o.free = nil, nil, nil, nil, nil
	return errors.Join(errs...)
}

// programs returns the loaded programs (tests read their run time).
func (o *Offload) programs() (tc, xdp *ebpf.Program) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return nil, nil
	}
	return o.objs.RelayTc, o.objs.RelayXdp
}
