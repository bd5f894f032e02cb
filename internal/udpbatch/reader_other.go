//go:build !linux

package udpbatch

import (
	"net"
	"sync"
)

type reader struct{}

type batch struct{}

func newBatch(int, int) *batch { return &batch{} }

func newReader(*net.UDPConn, Options) *reader { return nil }

func (*reader) readFrom([]byte) (int, net.Addr, error) { panic("unreachable") }

type writer struct{}

func newWriter(*net.UDPConn, *sync.Pool) *writer { return nil }

func (*writer) writeTo([]byte, net.Addr) (int, bool, error) { panic("unreachable") }
