package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/ferryrtc/ferry/probe"
	"github.com/ferryrtc/ferry/rfc5780"
)

// stunResponder answers Binding requests on a loopback socket (the rfc5780
// layer alone, without alternates) until the test ends.
func stunResponder(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := rfc5780.New(rfc5780.Options{Software: "ferry-test"})
	if err != nil {
		t.Fatal(err)
	}
	wrapped := r.Wrap(pc)
	done := make(chan struct{})
	go func() { // pion's place: read whatever is not a Binding request
		defer close(done)
		buf := make([]byte, 1600)
		for {
			if _, _, err := wrapped.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = wrapped.Close()
		<-done
		_ = r.Close()
	})
	return pc.LocalAddr().String()
}

func TestProbeCommand(t *testing.T) {
	addr := stunResponder(t)
	tests := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout
		err  string // substring of stderr
	}{
		{name: "stun text", args: []string{"probe", "stun://" + addr}, out: "mapping              unknown"},
		{name: "stun json", args: []string{"probe", "stun://" + addr, "--json"}, out: `"software": "ferry-test"`},
		{name: "bad url", args: []string{"probe", "http://x"}, code: 2, err: "not stun or turn"},
		{name: "no url", args: []string{"probe"}, code: 1, err: "accepts 1 arg"},
		{name: "turn without credentials", args: []string{"probe", "turn://" + addr}, code: 2, err: "--user and --password, or --secret"},
		{name: "stun with credentials", args: []string{"probe", "stun://" + addr, "--user", "u"}, code: 2, err: "for turn://"},
		{name: "bad timeout", args: []string{"probe", "stun://" + addr, "--timeout", "0s"}, code: 2, err: "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			code := run(context.Background(), e, tt.args)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) || !strings.Contains(stderr.String(), tt.err) {
				t.Errorf("stdout:\n%s\nstderr:\n%s\nwant %q / %q", stdout.String(), stderr.String(), tt.out, tt.err)
			}
			if strings.HasSuffix(tt.name, "json") {
				var rep probe.STUNReport
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Mapped == "" {
					t.Errorf("JSON report %+v: %v", rep, err)
				}
			}
		})
	}
}
