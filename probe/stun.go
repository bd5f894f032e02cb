package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/pion/stun/v3"
)

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	ChangeIP   = 0x04
	ChangePort = 0x02
)

// DefaultTimeout bounds each probe exchange when the options give none.
const DefaultTimeout = time.Second

// BindingResult is a Binding success response.
type BindingResult struct {
	// Mapped is XOR-MAPPED-ADDRESS (MAPPED-ADDRESS from servers without it).
	Mapped netip.AddrPort
	// ResponseOrigin and OtherAddress are the RFC 5780 attributes; zero
	// when absent.
	ResponseOrigin, OtherAddress netip.AddrPort
	// Software is the SOFTWARE attribute.
	Software string
	// From is where the response came from.
	From netip.AddrPort
	// RTT is the time from the first send to the response.
	RTT time.Duration
}

// Binding sends a Binding request from pc to server (with CHANGE-REQUEST
// flags when change is not 0) and returns the success response. An error
// response is returned as *ErrorResponse, silence as ErrTimeout.
func Binding(pc net.PacketConn, server netip.AddrPort, change byte, timeout time.Duration) (BindingResult, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if change != 0 {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, change}})
	}
	setters = append(setters, stun.Fingerprint)
	req, err := stun.Build(setters...)
	if err != nil {
		return BindingResult{}, fmt.Errorf("build Binding request: %w", err)
	}
	res, from, rtt, err := transaction(pc, req, server, timeout, nil)
	if err != nil {
		return BindingResult{RTT: rtt}, err
	}
	if err := errorOf(res); err != nil {
		return BindingResult{RTT: rtt}, err
	}
	r := BindingResult{From: from, RTT: rtt}
	var xa stun.XORMappedAddress
	var ma stun.MappedAddress
	switch {
	case xa.GetFrom(res) == nil:
		r.Mapped = apOf(xa.IP, xa.Port)
	case ma.GetFrom(res) == nil:
		r.Mapped = apOf(ma.IP, ma.Port)
	default:
		return BindingResult{}, fmt.Errorf("binding response from %s has no mapped address", from)
	}
	var ro stun.ResponseOrigin
	if ro.GetFrom(res) == nil {
		r.ResponseOrigin = apOf(ro.IP, ro.Port)
	}
	var oa stun.OtherAddress
	if oa.GetFrom(res) == nil {
		r.OtherAddress = apOf(oa.IP, oa.Port)
	}
	var sw stun.Software
	if sw.GetFrom(res) == nil {
		r.Software = sw.String()
	}
	return r, nil
}

// Behaviour is a NAT mapping or filtering behaviour (RFC 4787 terms).
type Behaviour string

// The behaviours RFC 5780 §4.3 and §4.4 tell apart.
const (
	EndpointIndependent     Behaviour = "endpoint-independent"
	AddressDependent        Behaviour = "address-dependent"
	AddressAndPortDependent Behaviour = "address-and-port-dependent"
	// Unknown: the server cannot tell (no OTHER-ADDRESS, CHANGE-REQUEST
	// refused) or a test failed.
	Unknown Behaviour = "unknown"
)

// Hairpinning results.
const (
	HairpinYes     = "yes"
	HairpinNo      = "no"
	HairpinUnknown = "unknown"
)

// STUNOptions configures STUN.
type STUNOptions struct {
	// Target is the server to probe.
	Target Target
	// Timeout bounds each exchange; silence for this long counts as "no
	// answer" in the filtering and hairpinning tests. 0: DefaultTimeout.
	Timeout time.Duration
}

// STUNReport is what STUN found.
type STUNReport struct {
	Target string `json:"target"`
	// Server is the address probed.
	Server string `json:"server"`
	// Local is the probe's own address for the first test.
	Local string `json:"local"`
	// Mapped is the address the server saw (XOR-MAPPED-ADDRESS).
	Mapped string `json:"mapped"`
	// NAT is false when the mapped address is the local one.
	NAT            bool   `json:"nat"`
	ResponseOrigin string `json:"response_origin,omitempty"`
	OtherAddress   string `json:"other_address,omitempty"`
	Software       string `json:"software,omitempty"`
	// RFC5780 is true when the server sent OTHER-ADDRESS.
	RFC5780     bool      `json:"rfc5780"`
	Mapping     Behaviour `json:"mapping"`
	Filtering   Behaviour `json:"filtering"`
	Hairpinning string    `json:"hairpinning"`
	Steps       Steps     `json:"steps"`
	Notes       []string  `json:"notes,omitempty"`
	// Cause and Fix say, when the server did not answer, why and what to
	// do about it.
	Cause string `json:"cause,omitempty"`
	Fix   string `json:"fix,omitempty"`
}

// Step statuses.
const (
	StatusOK       = "ok"
	StatusNoAnswer = "no answer"
	StatusFailed   = "failed"
	StatusSkipped  = "skipped"
)

// Step is one exchange of a probe.
type Step struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	// Millis is how long the step took, in milliseconds.
	Millis float64 `json:"ms"`
	Detail string  `json:"detail,omitempty"`
}

// Steps is a probe's steps in order.
type Steps []Step

func (r *Steps) add(name, status string, d time.Duration, detail string) {
	*r = append(*r, Step{Name: name, Status: status, Millis: float64(d.Microseconds()) / 1000, Detail: detail})
}

// STUN probes a STUN server: its Binding answer, then (when it advertises
// OTHER-ADDRESS) the NAT's mapping and filtering behaviour and hairpinning,
// per RFC 5780 §4.3-4.5. The error is non-nil when the server did not
// answer the first Binding request; the report is returned either way.
func STUN(ctx context.Context, o STUNOptions) (*STUNReport, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	rep := &STUNReport{Target: o.Target.String(), Mapping: Unknown, Filtering: Unknown, Hairpinning: HairpinUnknown}
	server, err := resolve(ctx, o.Target.Host, o.Target.Port)
	if err != nil {
		rep.Cause, rep.Fix = diagnose(failure{err: err})
		return rep, err
	}
	rep.Server = server.String()
	p := &stunProbe{server: server, timeout: o.Timeout, rep: rep}
	if err := p.mapping(); err != nil {
		rep.Cause, rep.Fix = diagnose(failure{step: stepBinding, err: err, server: server})
		return rep, err
	}
	if ctx.Err() == nil {
		p.filtering()
	}
	if ctx.Err() == nil {
		p.hairpinning()
	}
	return rep, ctx.Err()
}

type stunProbe struct {
	server  netip.AddrPort
	other   netip.AddrPort
	timeout time.Duration
	rep     *STUNReport
}

// open returns a fresh socket on the local address toward the server.
func (p *stunProbe) open() (*net.UDPConn, netip.AddrPort, error) {
	c, err := listenFor(p.server)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return c, addrOf(c.LocalAddr()), nil
}

// mapping runs the Binding test and RFC 5780 §4.3.
func (p *stunProbe) mapping() error {
	rep := p.rep
	c, local, err := p.open()
	if err != nil {
		rep.Steps.add("binding", StatusFailed, 0, err.Error())
		return err
	}
	defer c.Close()
	rep.Local = local.String()
	r1, err := Binding(c, p.server, 0, p.timeout)
	if err != nil {
		rep.Steps.add("binding", statusOf(err), r1.RTT, fmt.Sprintf("to %s: %v", p.server, err))
		return fmt.Errorf("binding request to %s: %w", p.server, err)
	}
	rep.Mapped = r1.Mapped.String()
	rep.NAT = r1.Mapped != local
	rep.Software = r1.Software
	if r1.ResponseOrigin.IsValid() {
		rep.ResponseOrigin = r1.ResponseOrigin.String()
	}
	detail := "mapped " + r1.Mapped.String()
	if r1.OtherAddress.IsValid() {
		rep.OtherAddress = r1.OtherAddress.String()
		rep.RFC5780 = true
		p.other = r1.OtherAddress
		detail += ", other address " + r1.OtherAddress.String()
	}
	rep.Steps.add("binding", StatusOK, r1.RTT, detail)
	if !rep.RFC5780 {
		rep.Notes = append(rep.Notes, "the server sent no OTHER-ADDRESS (no RFC 5780 alternate address): mapping and filtering behaviour cannot be determined")
		return nil
	}
	if p.other.Addr().Is4() != p.server.Addr().Is4() || p.other.Addr() == p.server.Addr() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("OTHER-ADDRESS %s is unusable with %s", p.other, p.server))
		p.other = netip.AddrPort{}
		return nil
	}
	if !rep.NAT {
		rep.Mapping = EndpointIndependent
		rep.Notes = append(rep.Notes, "mapped address equals the local address: no NAT")
		return nil
	}
	// Test II: the alternate IP, the primary port.
	r2, err := Binding(c, netip.AddrPortFrom(p.other.Addr(), p.server.Port()), 0, p.timeout)
	if err != nil {
		rep.Steps.add("mapping test II", statusOf(err), r2.RTT, err.Error())
		return nil
	}
	rep.Steps.add("mapping test II", StatusOK, r2.RTT, fmt.Sprintf("to %s: mapped %s", netip.AddrPortFrom(p.other.Addr(), p.server.Port()), r2.Mapped))
	if r2.Mapped == r1.Mapped {
		rep.Mapping = EndpointIndependent
		return nil
	}
	// Test III: the alternate IP and port.
	r3, err := Binding(c, p.other, 0, p.timeout)
	if err != nil {
		rep.Steps.add("mapping test III", statusOf(err), r3.RTT, err.Error())
		return nil
	}
	rep.Steps.add("mapping test III", StatusOK, r3.RTT, fmt.Sprintf("to %s: mapped %s", p.other, r3.Mapped))
	if r3.Mapped == r2.Mapped {
		rep.Mapping = AddressDependent
	} else {
		rep.Mapping = AddressAndPortDependent
	}
	return nil
}

// filtering runs RFC 5780 §4.4 on a fresh socket, so the mapping tests'
// packets to the alternate address have opened no filter.
func (p *stunProbe) filtering() {
	rep := p.rep
	if !p.other.IsValid() {
		return
	}
	c, _, err := p.open()
	if err != nil {
		rep.Steps.add("filtering test I", StatusFailed, 0, err.Error())
		return
	}
	defer c.Close()
	r1, err := Binding(c, p.server, 0, p.timeout)
	if err != nil {
		rep.Steps.add("filtering test I", statusOf(err), r1.RTT, err.Error())
		return
	}
	rep.Steps.add("filtering test I", StatusOK, r1.RTT, "mapped "+r1.Mapped.String())
	r2, err := Binding(c, p.server, ChangeIP|ChangePort, p.timeout)
	switch {
	case err == nil:
		rep.Steps.add("filtering test II", StatusOK, r2.RTT, "change IP and port: answer from "+r2.From.String())
		rep.Filtering = EndpointIndependent
		return
	case errors.Is(err, ErrTimeout):
		rep.Steps.add("filtering test II", StatusNoAnswer, r2.RTT, "change IP and port: nothing came through")
	default:
		rep.Steps.add("filtering test II", StatusFailed, r2.RTT, "change IP and port: "+err.Error())
		return
	}
	r3, err := Binding(c, p.server, ChangePort, p.timeout)
	switch {
	case err == nil:
		rep.Steps.add("filtering test III", StatusOK, r3.RTT, "change port: answer from "+r3.From.String())
		rep.Filtering = AddressDependent
	case errors.Is(err, ErrTimeout):
		rep.Steps.add("filtering test III", StatusNoAnswer, r3.RTT, "change port: nothing came through")
		rep.Filtering = AddressAndPortDependent
	default:
		rep.Steps.add("filtering test III", StatusFailed, r3.RTT, "change port: "+err.Error())
	}
}

// hairpinning runs RFC 5780 §4.5: a second socket sends a Binding request
// to the first socket's mapped address; hairpinning works if it arrives.
func (p *stunProbe) hairpinning() {
	rep := p.rep
	c1, _, err := p.open()
	if err != nil {
		rep.Steps.add("hairpinning", StatusFailed, 0, err.Error())
		return
	}
	defer c1.Close()
	c2, _, err := p.open()
	if err != nil {
		rep.Steps.add("hairpinning", StatusFailed, 0, err.Error())
		return
	}
	defer c2.Close()
	r1, err := Binding(c1, p.server, 0, p.timeout)
	if err != nil {
		rep.Steps.add("hairpinning", statusOf(err), r1.RTT, "binding: "+err.Error())
		return
	}
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		rep.Steps.add("hairpinning", StatusFailed, 0, err.Error())
		return
	}
	start := time.Now()
	deadline := start.Add(p.timeout)
	buf := make([]byte, bufSize)
	dst := net.UDPAddrFromAddrPort(r1.Mapped)
	for time.Now().Before(deadline) {
		if _, err := c2.WriteTo(req.Raw, dst); err != nil {
			rep.Steps.add("hairpinning", StatusFailed, time.Since(start), fmt.Sprintf("send to %s: %v", r1.Mapped, err))
			return
		}
		next := time.Now().Add(initialRTO)
		if next.After(deadline) {
			next = deadline
		}
		_ = c1.SetReadDeadline(next)
		for {
			n, from, err := c1.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				rep.Steps.add("hairpinning", StatusFailed, time.Since(start), err.Error())
				return
			}
			d, ok := parseDatagram(buf[:n], nil)
			if ok && d.msg != nil && d.msg.TransactionID == req.TransactionID {
				rep.Hairpinning = HairpinYes
				rep.Steps.add("hairpinning", StatusOK, time.Since(start), fmt.Sprintf("request to %s came back from %s", r1.Mapped, addrOf(from)))
				return
			}
		}
	}
	rep.Hairpinning = HairpinNo
	rep.Steps.add("hairpinning", StatusNoAnswer, time.Since(start), "nothing sent to "+r1.Mapped.String()+" came back")
}

func statusOf(err error) string {
	if errors.Is(err, ErrTimeout) {
		return StatusNoAnswer
	}
	return StatusFailed
}
