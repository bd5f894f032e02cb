package offload

// The BPF programs are compiled by bpf2go (clang) into relay_bpfel.o and
// relay_bpfel.go, both committed: building ferry needs no clang. Regenerate
// after changing bpf/ (scripts/install-test-deps.sh installs clang, llvm
// and libbpf-dev); TestGeneratedObjectsMatchSource checks that the
// committed files match their sources.
//
// bpf2go compiles with clang and strips DWARF with llvm-strip (BTF stays);
// with the relative source path the object does not depend on the build
// directory, and clang's output is byte-reproducible. The
// -I/usr/include/x86_64-linux-gnu is for Debian's <asm/types.h>.
//go:generate go tool bpf2go -tags linux -target bpfel -type c2p_key -type c2p_val -type p2c_key -type p2c_val -type chan_counters -type stat relay bpf/relay.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
