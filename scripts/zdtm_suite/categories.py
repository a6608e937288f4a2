"""Which kind of kernel state a zdtm test exercises, from its name.

zdtm names are systematic enough (`socket-tcp*`, `file_locks*`, `maps*` ...) that an ordered list
of patterns sorts them; the first pattern that matches wins, so the narrower kinds (locks, deleted
files) come before the broader ones (files). Names were checked against the tests' sources where
the name alone was ambiguous (e.g. `socket_close_data` is a Unix socketpair, `sock_opts00` inet).
"""

import re

# (category, pattern matched against the whole test name), first match wins.
RULES = [
    ("file locks", r"file_locks.*|file_lease.*"),
    ("unix sockets", r"sk-unix.*|sockets0.*|sockets_.*|scm.*|socket_queues.*|del_standalone_un.*"
     r"|deleted_unix_sock|sock_peercred|socket_close_data.*|socket_snd_addr|socket_dgram_data"
     r"|socket-ext|fifo_upon_unix_socket.*|sk-unix-dgram-ghost|helper_zombie_child"),
    ("inet sockets", r"socket-tcp.*|socket_tcp.*|sock_tcp.*|socket-dump-tcp.*|socket-linger"
     r"|socket_udp.*|socket6_udp|socket_udplite|socket_listen.*|socket_icmp|socket6_icmp"
     r"|sk-freebind.*|sock_ip_opts.*|sock_opts.*|socket_aio|unbound_sock|socket-raw"
     r"|net_lock_socket.*"),
    ("other sockets", r"sk-netlink|packet_sock.*|sock_filter.*"),
    ("deleted files", r"unlink_.*|ghost_.*|deleted_dev|fifo-ghost|rmdir_open|cwd0[12]"),
    ("pipes and fifos", r"pipe.*|fifo.*"),
    ("event fds", r"epoll.*|eventfs.*|inotify.*|fanotify.*|signalfd.*|timerfd|aio.*|poll"
     r"|pidfd.*|fd_from_pidfd|uffd-events"),
    ("ttys", r"pty.*|tty.*|console|vt"),
    ("memory", r"maps.*|mem-touch|mprotect.*|cow.*|grow_map.*|mlock_setuid|thp_disable|memfd.*"
     r"|shmemfd.*|vdso.*|s390x_mmap_high|mtime_mmap"),
    ("SysV IPC and futexes", r"msgque|sem|shm.*|futex.*|ipc_namespace"),
    ("signals and timers", r"sig.*|posix_timers|timers.*|pthread_timers.*|ptrace_sig|time"
     r"|uptime_grow"),
    ("CPU and threads", r"fpu.*|mmx.*|sse.*|vsx|arm-neon.*|rseq.*|membarrier|pthread.*"
     r"|busyloop.*|sleeping.*"),
    ("process attributes", r"caps.*|groups|xids.*|different_creds|thread_different_uid_gid"
     r"|dumpable.*|loginuid|seccomp.*|cmdlinenv.*|env.*|umask.*|rlimits.*|sched_.*"
     r"|oom_score_adj|pdeath_sig|child_subreaper.*|utsname|personality.*|selfexe.*"),
    ("process tree", r"pid.*|zombie.*|wait.*|pstree|session.*|vfork.*|stopped.*|clone_fs"
     r"|fdt_shared|remap_dead_pid.*|proc-self|unsupported_children_collision"),
    ("files", r"file_.*|fd.*|opath_file|write_read.*|link.*|symlink.*|cwd.*|chroot.*"
     r"|child_opened_proc|unhashed_proc"),
    ("mounts, namespaces, cgroups", r"mnt.*|mount.*|bind-mount|overmount.*|tempfs.*|mntns.*"
     r"|.*_propagation|shared_.*|unbindable|netns.*|cgroup.*|timens.*|tun.*|macvlan|bridge"
     r"|cr_veth.*|sit|apparmor.*|selinux.*|autofs|binfmt_misc|change_mnt_context|clean_mntns"
     r"|conntracks|route_rules|rtc|non_uniform_share_propagation"),
]

_COMPILED = [(name, re.compile(pattern)) for name, pattern in RULES]

OTHER = "other"


def category(test: str) -> str:
    """The kind of state `test` (a zdtm static test name) exercises."""
    for name, pattern in _COMPILED:
        if pattern.fullmatch(test):
            return name
    return OTHER


def order() -> list[str]:
    """Categories in the order tables list them."""
    return [name for name, _ in RULES] + [OTHER]
