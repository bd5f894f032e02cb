//go:build !(linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64))

package offload

import (
	"errors"
	"fmt"
)

var errNoFastPath = fmt.Errorf("offload: the kernel fast path needs Linux on a little-endian CPU: %w", errors.ErrUnsupported)

// Offload is the kernel fast path; on this platform Open always fails.
type Offload struct{}

// Supported reports whether this process can load BPF programs: never here.
func Supported() error { return errNoFastPath }

// Open fails here with an error wrapping errors.ErrUnsupported (ErrOff for
// ModeOff).
func Open(o Options) (*Offload, error) {
	if o.Mode == ModeOff {
		return nil, ErrOff
	}
	return nil, errNoFastPath
}

// Attached lists nothing.
func (o *Offload) Attached() []Attachment { return nil }

// Put fails: there is no fast path.
func (o *Offload) Put(ch Channel) error {
	if err := checkChannel(ch); err != nil {
		return err
	}
	return errNoFastPath
}

// Delete does nothing.
func (o *Offload) Delete(Channel) error { return nil }

// Counters fails: there is no fast path.
func (o *Offload) Counters(Channel) (Counters, error) { return Counters{}, errNoFastPath }

// Stats fails: there is no fast path.
func (o *Offload) Stats() (Stats, error) { return Stats{}, errNoFastPath }

// Close does nothing.
func (o *Offload) Close() error { return nil }

// Forwarding reports no forwarding: there is no fast path to need it.
func Forwarding(string) (v4, v6 bool) { return false, false }
