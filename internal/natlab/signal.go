package natlab

import "syscall"

// interruptSignal stops a process run in a namespace: `ip netns exec`
// execs the command, so the signal reaches it directly.
const interruptSignal = syscall.SIGTERM
