package natlab

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/natlab"
	"github.com/ferryrtc/ferry/probe"
)

const (
	labUser = "alice"
	labPass = "natlab-secret"
)

func TestMain(m *testing.M) {
	natlab.RunHelper() // exits when this binary was started as a lab helper
	os.Exit(m.Run())
}

// TestNATLab builds one lab and one ferry and runs every lab assertion
// against them, in parallel where they do not interfere.
func TestNATLab(t *testing.T) {
	lab := natlab.Up(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	bin, err := natlab.BuildFerry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built ferry in %v", time.Since(start).Round(time.Millisecond))
	lab.StartFerry(t, bin, lab.FerryArgs(labUser, labPass)...)
	server := netip.AddrPortFrom(lab.FerryIP, 3478)

	t.Run("probe", func(t *testing.T) {
		for _, kind := range []string{"fullcone", "restricted", "portrestricted", "symmetric", "symmetric2"} {
			t.Run(kind, func(t *testing.T) {
				t.Parallel()
				testProbe(t, lab, bin, server, lab.NAT(t, kind))
			})
		}
	})
	t.Run("natdiscovery", func(t *testing.T) {
		tool := natlab.RequireTool(t, "turnutils_natdiscovery")
		for _, kind := range []string{"fullcone", "restricted", "portrestricted", "symmetric"} {
			t.Run(kind, func(t *testing.T) {
				t.Parallel()
				testNATDiscovery(t, lab, bin, tool, server, lab.NAT(t, kind))
			})
		}
	})
	t.Run("punch", func(t *testing.T) {
		tests := []struct {
			a, b    string
			through bool
		}{
			{a: "symmetric", b: "symmetric2", through: false},
			// The control: endpoint-independent mappings punch through.
			{a: "fullcone", b: "portrestricted", through: true},
		}
		for _, tt := range tests {
			t.Run(tt.a+"-"+tt.b, func(t *testing.T) {
				t.Parallel()
				testPunch(t, lab, server, lab.NAT(t, tt.a), lab.NAT(t, tt.b), tt.through)
			})
		}
	})
	t.Run("relay-symmetric", func(t *testing.T) {
		testRelay(t, lab, server, lab.NAT(t, "symmetric"), lab.NAT(t, "symmetric2"))
	})
	t.Run("probe-turn", func(t *testing.T) {
		testProbeTURN(t, lab, bin, server, lab.NAT(t, "symmetric"))
	})
}

// testProbe runs `ferry probe stun://` behind nat and checks the mapped
// address and the behaviours it names.
func testProbe(t *testing.T, lab *natlab.Lab, bin string, server netip.AddrPort, nat natlab.NAT) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := lab.Command(ctx, nat.Client, bin, "probe", "stun://"+server.String(), "--json", "--timeout", "500ms").Output()
	if err != nil {
		t.Fatalf("ferry probe: %v\n%s", err, out)
	}
	var rep probe.STUNReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("probe JSON: %v\n%s", err, out)
	}
	t.Logf("probe behind %s in %v: mapped %s, mapping %s, filtering %s, hairpinning %s",
		nat.Kind, time.Since(start).Round(time.Millisecond), rep.Mapped, rep.Mapping, rep.Filtering, rep.Hairpinning)
	mapped, err := netip.ParseAddrPort(rep.Mapped)
	if err != nil || mapped.Addr() != nat.Public {
		t.Errorf("mapped address %q, want the NAT's public address %s", rep.Mapped, nat.Public)
	}
	if !rep.NAT || rep.Local == rep.Mapped {
		t.Errorf("probe saw no NAT: local %s mapped %s", rep.Local, rep.Mapped)
	}
	if string(rep.Mapping) != nat.Mapping || string(rep.Filtering) != nat.Filtering || rep.Hairpinning != nat.Hairpinning {
		t.Errorf("probe says mapping %s, filtering %s, hairpinning %s; the NAT is %s, %s, %s\n%s",
			rep.Mapping, rep.Filtering, rep.Hairpinning, nat.Mapping, nat.Filtering, nat.Hairpinning, out)
	}
}

// testNATDiscovery checks that coturn's turnutils_natdiscovery, run against
// ferry, agrees with ferry probe and with the NAT's design.
func testNATDiscovery(t *testing.T, lab *natlab.Lab, bin, tool string, server netip.AddrPort, nat natlab.NAT) {
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	// Behaviour and hairpinning run in parallel: each takes seconds of
	// natdiscovery's fixed timeouts when packets are filtered.
	behaviour := make(chan result, 1)
	go func() {
		out, err := lab.Command(ctx, nat.Client, tool, "-m", "-f", "-p", strconv.Itoa(int(server.Port())), server.Addr().String()).CombinedOutput()
		behaviour <- result{out, err}
	}()
	start := time.Now()
	hp, hpErr := lab.Command(ctx, nat.Client, tool, "-H", "-p", strconv.Itoa(int(server.Port())), server.Addr().String()).CombinedOutput()
	b := <-behaviour
	if b.err != nil || hpErr != nil {
		t.Fatalf("turnutils_natdiscovery: %v / %v\n%s\n%s", b.err, hpErr, b.out, hp)
	}
	mapping, filtering := natDiscoveryVerdicts(string(b.out))
	hairpin := probe.HairpinNo
	if strings.Contains(string(hp), "successful hairpinning") {
		hairpin = probe.HairpinYes
	}
	t.Logf("natdiscovery behind %s in %v: mapping %s, filtering %s, hairpinning %s",
		nat.Kind, time.Since(start).Round(time.Millisecond), mapping, filtering, hairpin)

	out, err := lab.Command(ctx, nat.Client, bin, "probe", "stun://"+server.String(), "--json", "--timeout", "500ms").Output()
	if err != nil {
		t.Fatalf("ferry probe: %v\n%s", err, out)
	}
	var rep probe.STUNReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if mapping != string(rep.Mapping) || filtering != string(rep.Filtering) || hairpin != rep.Hairpinning {
		t.Errorf("natdiscovery says %s/%s/hairpin %s, ferry probe %s/%s/hairpin %s\n%s",
			mapping, filtering, hairpin, rep.Mapping, rep.Filtering, rep.Hairpinning, b.out)
	}
	if mapping != nat.Mapping || filtering != nat.Filtering || hairpin != nat.Hairpinning {
		t.Errorf("natdiscovery says %s/%s/hairpin %s; the NAT is %s/%s/hairpin %s",
			mapping, filtering, hairpin, nat.Mapping, nat.Filtering, nat.Hairpinning)
	}
}

// natDiscoveryVerdicts extracts the "NAT with ... Mapping!" and "...
// Filtering!" verdicts, named as ferry probe names behaviours.
func natDiscoveryVerdicts(out string) (mapping, filtering string) {
	re := regexp.MustCompile(`NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) (Mapping|Filtering)!`)
	name := map[string]string{
		"Endpoint Independent":       string(probe.EndpointIndependent),
		"Address Dependent":          string(probe.AddressDependent),
		"Address and Port Dependent": string(probe.AddressAndPortDependent),
	}
	mapping, filtering = string(probe.Unknown), string(probe.Unknown)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		if m[2] == "Mapping" {
			mapping = name[m[1]]
		} else {
			filtering = name[m[1]]
		}
	}
	return mapping, filtering
}

// testPunch has the clients behind a and b learn their mapped addresses
// from ferry and send to each other's for a while.
func testPunch(t *testing.T, lab *natlab.Lab, server netip.AddrPort, a, b natlab.NAT, through bool) {
	start := time.Now()
	ha := lab.Helper(t, a.Client, "punch", server.String(), "1s")
	hb := lab.Helper(t, b.Client, "punch", server.String(), "1s")
	ma, mb := ha.Expect("mapped"), hb.Expect("mapped")
	for _, c := range []struct {
		mapped string
		nat    natlab.NAT
	}{{ma, a}, {mb, b}} {
		if ap, err := netip.ParseAddrPort(c.mapped); err != nil || ap.Addr() != c.nat.Public {
			t.Errorf("STUN mapped address behind %s is %s, want the NAT's %s", c.nat.Kind, c.mapped, c.nat.Public)
		}
	}
	ha.Send("peer", mb)
	hb.Send("peer", ma)
	na, _ := strconv.Atoi(ha.Expect("received"))
	nb, _ := strconv.Atoi(hb.Expect("received"))
	t.Logf("hole punch %s (%s) <-> %s (%s): %d and %d datagrams through in %v",
		a.Kind, ma, b.Kind, mb, na, nb, time.Since(start).Round(time.Millisecond))
	if through && (na == 0 || nb == 0) {
		t.Errorf("control punch failed: %d and %d datagrams received", na, nb)
	}
	if !through && (na != 0 || nb != 0) {
		t.Errorf("%d and %d datagrams got through symmetric NATs directly", na, nb)
	}
}

// testRelay has the client behind a allocate on ferry and the client behind
// b exchange data with it through the relay.
func testRelay(t *testing.T, lab *natlab.Lab, server netip.AddrPort, a, b natlab.NAT) {
	start := time.Now()
	client := lab.Helper(t, a.Client, "relay-client", server.String(), labUser, labPass)
	peer := lab.Helper(t, b.Client, "relay-peer", server.String())
	relayed := client.Expect("relayed")
	mapped := peer.Expect("mapped")
	ap, err := netip.ParseAddrPort(mapped)
	if err != nil || ap.Addr() != b.Public {
		t.Fatalf("peer mapped address %s, want the NAT's %s", mapped, b.Public)
	}
	client.Send("peer", ap.Addr().String())
	peer.Send("relayed", relayed)
	from := peer.Expect("ok")
	client.CloseInput()
	if err := client.Wait(); err != nil {
		t.Errorf("relay client: %v", err)
	}
	if from != relayed {
		t.Errorf("pong came from %s, want the relayed address %s", from, relayed)
	}
	t.Logf("relay %s -> %s -> %s round trip in %v", b.Kind, relayed, a.Kind, time.Since(start).Round(time.Millisecond))
}

// testProbeTURN runs `ferry probe turn://` from behind a symmetric NAT.
func testProbeTURN(t *testing.T, lab *natlab.Lab, bin string, server netip.AddrPort, nat natlab.NAT) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := lab.Command(ctx, nat.Client, bin, "probe", "turn://"+server.String(),
		"--user", labUser, "--password", labPass, "--json").Output()
	var rep probe.TURNReport
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("probe JSON: %v (exit %v)\n%s", jerr, err, out)
	}
	if err != nil || !rep.OK {
		t.Fatalf("ferry probe turn:// failed: %v\n%s", err, out)
	}
	if m, _ := netip.ParseAddrPort(rep.Mapped); m.Addr() != nat.Public {
		t.Errorf("allocation mapped %s, want the NAT's %s", rep.Mapped, nat.Public)
	}
	if r, _ := netip.ParseAddrPort(rep.Relayed); r.Addr() != lab.FerryIP {
		t.Errorf("relayed %s, want ferry's %s", rep.Relayed, lab.FerryIP)
	}
}
