package netwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Addrs returns every unicast address configured on interfaces that are
// up: IPv4 and IPv6, link-local and loopback included, IPv4-mapped IPv6
// addresses unmapped, without zones, sorted and deduplicated. IPv6
// addresses still in duplicate address detection (tentative) are
// included, those whose detection failed are not. The list is never nil
// when the error is nil.
//
// It reads them with rtnetlink dumps in the network namespace of the
// calling thread (see the package comment), and dumps again when the
// kernel reports that a dump was interrupted by a concurrent change.
func Addrs() ([]netip.Addr, error) {
	const attempts = 5
	for range attempts - 1 {
		addrs, err := dumpAddrs()
		if !errors.Is(err, errDumpInterrupted) {
			return addrs, err
		}
	}
	return dumpAddrs()
}

// Watch calls onChange with the full address list, as Addrs returns it,
// whenever it differs from the last list delivered, until ctx ends. It
// listens to rtnetlink's address and link notifications, waits
// o.Debounce after the first of a burst, then re-reads the whole list.
// The list when Watch starts (or o.Initial) is not delivered, only changes
// to it.
//
// onChange runs on Watch's goroutine, one call at a time, and may keep the
// slice; notifications arriving while it runs are coalesced into one
// re-read after it returns.
//
// Watch blocks until ctx ends, then returns nil once its goroutine has
// ended. It returns an error at once if the rtnetlink socket cannot be
// opened or the first read fails, and later if reading notifications
// fails. A failed re-read is logged and retried.
func Watch(ctx context.Context, o Options, onChange func([]netip.Addr)) error {
	if onChange == nil {
		return errors.New("netwatch: Watch needs an onChange function")
	}
	sub, err := subscribe(o.Log)
	if err != nil {
		return err
	}
	return watch(ctx, o, sub, Addrs, onChange)
}

// groups are the rtnetlink multicast groups Watch joins.
const groups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR

// rtnetlink is Watch's subscription: a non-blocking NETLINK_ROUTE socket in
// an os.File, so that reads wait in the Go runtime's poller and closing the
// file wakes a blocked read. (close(2) on a socket another thread is
// blocked reading does not wake that thread, and netlink sockets do not
// implement shutdown(2).)
type rtnetlink struct {
	f        *os.File
	rc       syscall.RawConn
	buf      []byte
	log      *slog.Logger
	overruns int // ENOBUFS seen, for the log; only wait uses it
}

func subscribe(log *slog.Logger) (*rtnetlink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netwatch: opening a NETLINK_ROUTE socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("netwatch: joining the rtnetlink link and address groups: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("netwatch: rtnetlink socket: %w", err)
	}
	// Notifications are only counted, never parsed: a short buffer is
	// enough, the rest of a longer message is dropped.
	return &rtnetlink{f: f, rc: rc, buf: make([]byte, 4096), log: log}, nil
}

func (s *rtnetlink) wait() error {
	for {
		var (
			from unix.Sockaddr
			rerr error
		)
		err := s.rc.Read(func(fd uintptr) bool {
			_, from, rerr = unix.Recvfrom(int(fd), s.buf, 0)
			return rerr != unix.EAGAIN
		})
		switch {
		case err != nil:
			return err // closed
		case rerr == unix.ENOBUFS:
			// The receive queue overran and notifications were lost;
			// the re-read this causes catches up on them.
			s.overruns++
			s.log.Debug("netwatch: rtnetlink notifications lost (ENOBUFS); re-reading addresses", "overruns", s.overruns)
			return nil
		case rerr == unix.EINTR:
			continue
		case rerr != nil:
			return fmt.Errorf("recvfrom: %w", rerr)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid == 0 {
			return nil // from the kernel
		}
	}
}

func (s *rtnetlink) close() error { return s.f.Close() }

// errDumpInterrupted is the kernel's NLM_F_DUMP_INTR: the dumped table
// changed during the dump, which may have missed or repeated entries.
var errDumpInterrupted = errors.New("dump interrupted by a concurrent change")

// dumpAddrs reads the links (for their up flag) and the addresses with two
// rtnetlink dumps.
func dumpAddrs() ([]netip.Addr, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netwatch: opening a NETLINK_ROUTE socket: %w", err)
	}
	defer unix.Close(fd)
	// The kernel answers dumps at once; the timeout only keeps a broken
	// kernel from hanging the caller.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("netwatch: setting SO_RCVTIMEO on the NETLINK_ROUTE socket: %w", err)
	}
	buf := make([]byte, 64<<10) // dump messages are at most 32 KiB

	up := map[uint32]bool{}
	err = dump(fd, buf, 1, unix.RTM_GETLINK, make([]byte, unix.SizeofIfInfomsg), func(typ uint16, b []byte) {
		if typ != unix.RTM_NEWLINK || len(b) < unix.SizeofIfInfomsg {
			return
		}
		index := binary.NativeEndian.Uint32(b[4:8])
		flags := binary.NativeEndian.Uint32(b[8:12])
		up[index] = flags&unix.IFF_UP != 0
	})
	if err != nil {
		return nil, fmt.Errorf("netwatch: dumping links: %w", err)
	}

	var addrs []netip.Addr
	err = dump(fd, buf, 2, unix.RTM_GETADDR, make([]byte, unix.SizeofIfAddrmsg), func(typ uint16, b []byte) {
		if typ != unix.RTM_NEWADDR {
			return
		}
		if a, index, ok := parseAddr(b); ok && up[index] {
			addrs = append(addrs, a)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("netwatch: dumping addresses: %w", err)
	}
	return normalize(addrs), nil
}

// parseAddr returns the local address of an RTM_NEWADDR message and its
// interface index; ok is false for a message that is malformed, of another
// family, or for an address whose duplicate address detection failed.
func parseAddr(b []byte) (addr netip.Addr, index uint32, ok bool) {
	if len(b) < unix.SizeofIfAddrmsg {
		return netip.Addr{}, 0, false
	}
	family := b[0]
	flags := uint32(b[2])
	index = binary.NativeEndian.Uint32(b[4:8])
	var local, address []byte
	for attrs := b[unix.SizeofIfAddrmsg:]; len(attrs) >= unix.SizeofRtAttr; {
		n := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4])
		if n < unix.SizeofRtAttr || n > len(attrs) {
			return netip.Addr{}, 0, false
		}
		v := attrs[unix.SizeofRtAttr:n]
		switch typ {
		case unix.IFA_LOCAL:
			local = v
		case unix.IFA_ADDRESS:
			address = v
		case unix.IFA_FLAGS: // all the flags; the header has the low 8 bits
			if len(v) >= 4 {
				flags = binary.NativeEndian.Uint32(v)
			}
		}
		attrs = attrs[min(align4(n), len(attrs)):]
	}
	if flags&unix.IFA_F_DADFAILED != 0 {
		return netip.Addr{}, 0, false
	}
	// On a point-to-point interface IFA_ADDRESS is the peer's address and
	// IFA_LOCAL the local one; otherwise IFA_LOCAL is absent (IPv6) or
	// equal to IFA_ADDRESS (IPv4).
	ip := address
	if local != nil {
		ip = local
	}
	switch {
	case family == unix.AF_INET && len(ip) == 4:
		return netip.AddrFrom4([4]byte(ip)), index, true
	case family == unix.AF_INET6 && len(ip) == 16:
		return netip.AddrFrom16([16]byte(ip)), index, true
	}
	return netip.Addr{}, 0, false
}

// dump sends a dump request of type typ with body, of sequence number seq,
// and calls f with the type and payload of each message of the answer.
func dump(fd int, buf []byte, seq uint32, typ uint16, body []byte, f func(typ uint16, b []byte)) error {
	req := make([]byte, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], typ)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], seq)
	copy(req[unix.NLMSG_HDRLEN:], body)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	interrupted := false
	for {
		n, _, rflags, _, err := unix.Recvmsg(fd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("recvmsg: %w", err)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return fmt.Errorf("answer longer than %d bytes", len(buf))
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			mtyp := binary.NativeEndian.Uint16(b[4:6])
			mflags := binary.NativeEndian.Uint16(b[6:8])
			mseq := binary.NativeEndian.Uint32(b[8:12])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("malformed message: length %d of %d bytes", l, len(b))
			}
			payload := b[unix.NLMSG_HDRLEN:l]
			b = b[min(align4(l), len(b)):]
			if mseq != seq {
				continue // not ours (an earlier dump's)
			}
			if mflags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch mtyp {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				// Both carry an int32 error: negative errno, or 0.
				if len(payload) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(payload[0:4])); e < 0 {
						return unix.Errno(-e)
					}
				}
				if interrupted {
					return errDumpInterrupted
				}
				return nil
			default:
				f(mtyp, payload)
			}
		}
	}
}

// align4 rounds n up to netlink's 4-byte alignment.
func align4(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
