package probe

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report for people.
func (r *STUNReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "STUN probe of %s", r.Target)
	if r.Server != "" && !strings.Contains(r.Target, r.Server) {
		fmt.Fprintf(&b, " (%s)", r.Server)
	}
	if r.Local != "" {
		fmt.Fprintf(&b, " from %s", r.Local)
	}
	b.WriteString("\n\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %-20s %s\n", k, v)
		}
	}
	mapped := r.Mapped
	if mapped != "" {
		if r.NAT {
			mapped += " (behind NAT)"
		} else {
			mapped += " (no NAT: the local address)"
		}
	}
	row("mapped address", mapped)
	row("response origin", r.ResponseOrigin)
	row("other address", r.OtherAddress)
	row("server software", r.Software)
	row("mapping", string(r.Mapping))
	row("filtering", string(r.Filtering))
	row("hairpinning", r.Hairpinning)
	b.WriteString("\n")
	writeSteps(&b, r.Steps)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	writeDiagnosis(&b, r.Cause, r.Fix)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes the report for people.
func (r *TURNReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "TURN probe of %s", r.Target)
	if r.Server != "" && !strings.Contains(r.Target, r.Server) {
		fmt.Fprintf(&b, " (%s)", r.Server)
	}
	if r.Local != "" {
		fmt.Fprintf(&b, " from %s", r.Local)
	}
	fmt.Fprintf(&b, " as %q\n\n", r.Username)
	writeSteps(&b, r.Steps)
	switch {
	case r.OK:
		b.WriteString("\nresult: the server allocates and relays\n")
	case r.FailedStep != "":
		fmt.Fprintf(&b, "\nresult: FAILED at %s\n", r.FailedStep)
	default:
		b.WriteString("\nresult: FAILED\n")
	}
	writeDiagnosis(&b, r.Cause, r.Fix)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeDiagnosis writes the cause and fix lines of a failed probe.
func writeDiagnosis(b *strings.Builder, cause, fix string) {
	if cause != "" {
		fmt.Fprintf(b, "cause:  %s\n", cause)
	}
	if fix != "" {
		fmt.Fprintf(b, "fix:    %s\n", fix)
	}
}

func writeSteps(b *strings.Builder, steps Steps) {
	for _, s := range steps {
		ms := ""
		if s.Status != StatusSkipped {
			ms = fmt.Sprintf("%.1fms", s.Millis)
		}
		fmt.Fprintf(b, "  %-9s %9s  %-19s %s\n", s.Status, ms, s.Name, s.Detail)
	}
}
