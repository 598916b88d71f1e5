// Package timerslack gives a raftkv process one Linux timer slack for all
// its threads, which sets how often the Go runtime's sysmon thread wakes,
// and, where the process may, a longer one for sysmon alone.
//
// Why: while a process makes blocking system calls (a member makes one for
// every fdatasync, and for every loopback write, which runs the receiver's
// network stack inside the call), sysmon asks to sleep 20 µs at a time so
// that it can hand a blocked thread's P to another thread. The kernel ends
// each such sleep up to the thread's timer slack late, 50 µs by default,
// so sysmon wakes thousands of times a second per process, and every
// wake-up is two context switches. On the 2-vCPU machine of
// docs/benchmarks.md sysmon was a seventh of a member's CPU samples; with a
// slack of 1 ms, context switches per operation halved and the members used
// a quarter to a third less CPU per operation. Go has no setting for
// sysmon's period (golang/go#18236). The price of a larger slack is that
// the process's timers may fire that much later, which no raftkv timeout
// (ticks of 100 ms) notices.
//
// A thread can set only its own slack (without CAP_SYS_NICE), and a new
// thread inherits its creator's. sysmon is started from the main thread
// before main.main runs, so the one way to reach it is to set the slack on
// a thread and re-execute the binary from that thread: the new image's
// only thread has the slack, and every thread the runtime starts later
// inherits it. Exec does that; the process keeps its pid, arguments,
// environment and open standard streams.
//
// A longer slack for sysmon alone saves more (docs/benchmarks.md, session
// 8): sysmon then polls about every 10 ms, its pace when the process is
// idle, and hands a P on from a thread blocked in a system call that much
// later, while the other threads' timers keep the short slack. Setting
// another thread's slack takes CAP_SYS_NICE, and nothing names sysmon's
// thread: FindSysmon tells it by what it does, and HoldSysmon keeps the
// other threads at the short slack, since a thread that sysmon starts
// would otherwise inherit its long one.
//
// Outside Linux, Current, Exec, FindSysmon and HoldSysmon return
// errors.ErrUnsupported; SetThread and Thread exist only on Linux.
package timerslack
