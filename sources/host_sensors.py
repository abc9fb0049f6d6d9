"""What the host-sensor adapters share (Tetragon, Falco, the eBPF sensor, containerd): JSON records, syscalls.

Both sensors export one JSON object per line, and both name what a process did by a syscall or kernel
function (Falco's ``evt.type``, Tetragon's kprobe ``function_name`` or tracepoint). Splitting a payload
into records and mapping those names onto vigil's event kinds happens here once, so the two adapters
refuse bad input with the same reasons and agree on what, say, ``setns`` or ``finit_module`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import orjson

from vigil.event import Container, K8sContext, correlation_key_for
from vigil.sources.health import check_health_record, health_key, is_health_record
from vigil.sources.source import RecordRejected, Rejected

#: orjson refuses to encode more than 254 nested levels, and the pipeline wraps a record in a few levels
#: of its own (batch array, event envelope, dead-letter document); a record nested deeper than the rest
#: would parse here and then fail to ship, so it is refused here.
_ENVELOPE_LEVELS = 8
_DEEP_BRACKETS = 254 - _ENVELOPE_LEVELS

#: A syscall, kernel function or LSM hook (without its ``__x64_sys_``-style prefix) → the event kind it is.
SYSCALL_KINDS: dict[str, str] = {
    **dict.fromkeys(("execve", "execveat", "bprm_check", "bprm_check_security"), "process.exec"),
    **dict.fromkeys(("procexit",), "process.exit"),
    **dict.fromkeys(
        ("open", "openat", "openat2", "open_by_handle_at", "fd_install", "file_open", "file_permission",
         "mmap_file", "read", "pread64", "readv", "preadv", "preadv2"),
        "file.open",
    ),
    **dict.fromkeys(
        ("creat", "write", "pwrite64", "writev", "pwritev", "pwritev2", "truncate", "ftruncate", "path_truncate",
         "file_truncate", "rename", "renameat", "renameat2", "path_rename", "unlink", "unlinkat", "path_unlink",
         "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "path_chmod", "chown",
         "fchown", "fchownat", "lchown", "path_chown"),
        "file.write",
    ),
    **dict.fromkeys(("connect", "tcp_connect", "socket_connect"), "net.connect"),
    **dict.fromkeys(("accept", "accept4", "inet_csk_accept", "socket_accept"), "net.accept"),
    **dict.fromkeys(("listen", "inet_csk_listen_start", "socket_listen"), "net.listen"),
    **dict.fromkeys(("tcp_close",), "net.close"),
    **dict.fromkeys(("ptrace", "ptrace_access_check"), "process.ptrace"),
    **dict.fromkeys(
        ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
         "task_fix_setuid", "task_fix_setgid", "commit_creds"),
        "process.setid",
    ),
    **dict.fromkeys(("setns", "unshare"), "process.ns_change"),
    **dict.fromkeys(("mount", "fsmount", "move_mount", "sb_mount", "path_mount", "do_mount"), "fs.mount"),
    **dict.fromkeys(
        ("init_module", "finit_module", "do_init_module", "load_module", "kernel_module_request",
         "kernel_load_data"),
        "kernel.module_load",
    ),
    **dict.fromkeys(("bpf", "bpf_check", "bpf_prog", "bpf_prog_load"), "bpf.program"),
    **dict.fromkeys(("memfd_create",), "memfd.create"),
}

#: What each kind acts on, as ``target.resource`` (the eBPF sensor's events say the same).
KIND_RESOURCES = {
    "process.ptrace": "processes",
    "process.setid": "credentials",
    "process.ns_change": "namespaces",
    "kernel.module_load": "modules",
    "bpf.program": "bpf",
}
#: ptrace(2) requests by number, named as the eBPF sensor names them (``PTRACE_ATTACH`` is ``attach``).
PTRACE_REQUESTS = {0: "traceme", 4: "poketext", 5: "pokedata", 6: "pokeuser", 13: "setregs", 15: "setfpregs",
                   16: "attach", 0x4205: "setregset", 0x4206: "seize"}

#: Syscalls that open a file: whether they count as a read or a write depends on their flags.
OPEN_SYSCALLS = frozenset({"open", "openat", "openat2", "open_by_handle_at"})
#: open(2) flags that make an open a write: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND.
OPEN_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000

#: Syscall names in number order for each architecture (``uname -m`` spelling, as the audit subsystem and
#: seccomp profiles name them), from the kernel's uapi ``unistd`` headers; ``-N`` skips N unassigned numbers.
_SYSCALL_TABLES = {
    "x86_64": """
        read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction rt_sigprocmask
        rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select sched_yield mremap msync mincore madvise
        shmget shmat shmctl dup dup2 pause nanosleep getitimer alarm setitimer getpid sendfile socket connect accept
        sendto recvfrom sendmsg recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt
        clone fork vfork execve exit wait4 kill uname semget semop semctl shmdt msgget msgsnd msgrcv msgctl fcntl flock
        fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link unlink symlink
        readlink chmod fchmod chown fchown lchown umask gettimeofday getrlimit getrusage sysinfo times ptrace getuid
        syslog getgid setuid setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups setgroups
        setresuid getresuid setresgid getresgid getpgid setfsuid setfsgid getsid capget capset rt_sigpending
        rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod uselib personality ustat statfs fstatfs
        sysfs getpriority setpriority sched_setparam sched_getparam sched_setscheduler sched_getscheduler
        sched_get_priority_max sched_get_priority_min sched_rr_get_interval mlock munlock mlockall munlockall vhangup
        modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex setrlimit chroot sync acct settimeofday mount umount2
        swapon swapoff reboot sethostname setdomainname iopl ioperm create_module init_module delete_module
        get_kernel_syms query_module quotactl nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid readahead
        setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr
        lremovexattr fremovexattr tkill time futex sched_setaffinity sched_getaffinity set_thread_area io_setup
        io_destroy io_getevents io_submit io_cancel get_thread_area lookup_dcookie epoll_create epoll_ctl_old
        epoll_wait_old remap_file_pages getdents64 set_tid_address restart_syscall semtimedop fadvise64 timer_create
        timer_settime timer_gettime timer_getoverrun timer_delete clock_settime clock_gettime clock_getres
        clock_nanosleep exit_group epoll_wait epoll_ctl tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open
        mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl
        ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat mkdirat mknodat
        fchownat futimesat newfstatat unlinkat renameat linkat symlinkat readlinkat fchmodat faccessat pselect6 ppoll
        unshare set_robust_list get_robust_list splice tee sync_file_range vmsplice move_pages utimensat epoll_pwait
        signalfd timerfd_create eventfd fallocate timerfd_settime timerfd_gettime accept4 signalfd4 eventfd2
        epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init
        fanotify_mark prlimit64 name_to_handle_at open_by_handle_at clock_adjtime syncfs sendmmsg setns getcpu
        process_vm_readv process_vm_writev kcmp finit_module sched_setattr sched_getattr renameat2 seccomp getrandom
        memfd_create kexec_file_load bpf execveat userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2
        pkey_mprotect pkey_alloc pkey_free statx io_pgetevents rseq -89 pidfd_send_signal io_uring_setup io_uring_enter
        io_uring_register open_tree move_mount fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2
        pidfd_getfd faccessat2 process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset
        landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv set_mempolicy_home_node
    """,
    "i386": """
        restart_syscall exit fork read write open close waitpid creat link unlink execve chdir time mknod chmod lchown
        break oldstat lseek getpid mount umount setuid getuid stime ptrace alarm oldfstat pause utime stty gtty access
        nice ftime sync kill rename mkdir rmdir dup pipe times prof brk setgid getgid signal geteuid getegid acct
        umount2 lock ioctl fcntl mpx setpgid ulimit oldolduname umask chroot ustat dup2 getppid getpgrp setsid sigaction
        sgetmask ssetmask setreuid setregid sigsuspend sigpending sethostname setrlimit getrlimit getrusage gettimeofday
        settimeofday getgroups setgroups select symlink oldlstat readlink uselib swapon reboot readdir mmap munmap
        truncate ftruncate fchmod fchown getpriority setpriority profil statfs fstatfs ioperm socketcall syslog
        setitimer getitimer stat lstat fstat olduname iopl vhangup idle vm86old wait4 swapoff sysinfo ipc fsync
        sigreturn clone setdomainname uname modify_ldt adjtimex mprotect sigprocmask create_module init_module
        delete_module get_kernel_syms quotactl getpgid fchdir bdflush sysfs personality afs_syscall setfsuid setfsgid
        _llseek getdents _newselect flock msync readv writev getsid fdatasync _sysctl mlock munlock mlockall munlockall
        sched_setparam sched_getparam sched_setscheduler sched_getscheduler sched_yield sched_get_priority_max
        sched_get_priority_min sched_rr_get_interval nanosleep mremap setresuid getresuid vm86 query_module poll
        nfsservctl setresgid getresgid prctl rt_sigreturn rt_sigaction rt_sigprocmask rt_sigpending rt_sigtimedwait
        rt_sigqueueinfo rt_sigsuspend pread64 pwrite64 chown getcwd capget capset sigaltstack sendfile getpmsg putpmsg
        vfork ugetrlimit mmap2 truncate64 ftruncate64 stat64 lstat64 fstat64 lchown32 getuid32 getgid32 geteuid32
        getegid32 setreuid32 setregid32 getgroups32 setgroups32 fchown32 setresuid32 getresuid32 setresgid32 getresgid32
        chown32 setuid32 setgid32 setfsuid32 setfsgid32 pivot_root mincore madvise getdents64 fcntl64 -2 gettid
        readahead setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr
        lremovexattr fremovexattr tkill sendfile64 futex sched_setaffinity sched_getaffinity set_thread_area
        get_thread_area io_setup io_destroy io_getevents io_submit io_cancel fadvise64 -1 exit_group lookup_dcookie
        epoll_create epoll_ctl epoll_wait remap_file_pages set_tid_address timer_create timer_settime timer_gettime
        timer_getoverrun timer_delete clock_settime clock_gettime clock_getres clock_nanosleep statfs64 fstatfs64 tgkill
        utimes fadvise64_64 vserver mbind get_mempolicy set_mempolicy mq_open mq_unlink mq_timedsend mq_timedreceive
        mq_notify mq_getsetattr kexec_load waitid -1 add_key request_key keyctl ioprio_set ioprio_get inotify_init
        inotify_add_watch inotify_rm_watch migrate_pages openat mkdirat mknodat fchownat futimesat fstatat64 unlinkat
        renameat linkat symlinkat readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list get_robust_list
        splice sync_file_range tee vmsplice move_pages getcpu epoll_pwait utimensat signalfd timerfd_create eventfd
        fallocate timerfd_settime timerfd_gettime signalfd4 eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv
        pwritev rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init fanotify_mark prlimit64 name_to_handle_at
        open_by_handle_at clock_adjtime syncfs sendmmsg setns process_vm_readv process_vm_writev kcmp finit_module
        sched_setattr sched_getattr renameat2 seccomp getrandom memfd_create bpf execveat socket socketpair bind connect
        listen accept4 getsockopt setsockopt getsockname getpeername sendto sendmsg recvfrom recvmsg shutdown
        userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx
        arch_prctl io_pgetevents rseq -6 semget semctl shmget shmctl shmat shmdt msgget msgsnd msgrcv msgctl
        clock_gettime64 clock_settime64 clock_adjtime64 clock_getres_time64 clock_nanosleep_time64 timer_gettime64
        timer_settime64 timerfd_gettime64 timerfd_settime64 utimensat_time64 pselect6_time64 ppoll_time64 -1
        io_pgetevents_time64 recvmmsg_time64 mq_timedsend_time64 mq_timedreceive_time64 semtimedop_time64
        rt_sigtimedwait_time64 futex_time64 sched_rr_get_interval_time64 pidfd_send_signal io_uring_setup io_uring_enter
        io_uring_register open_tree move_mount fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2
        pidfd_getfd faccessat2 process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset
        landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv set_mempolicy_home_node
    """,
    "aarch64": """
        io_setup io_destroy io_submit io_cancel io_getevents setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr
        listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr getcwd lookup_dcookie eventfd2
        epoll_create1 epoll_ctl epoll_pwait dup dup3 fcntl inotify_init1 inotify_add_watch inotify_rm_watch ioctl
        ioprio_set ioprio_get flock mknodat mkdirat unlinkat symlinkat linkat renameat umount2 mount pivot_root
        nfsservctl statfs fstatfs truncate ftruncate fallocate faccessat chdir fchdir chroot fchmod fchmodat fchownat
        fchown openat close vhangup pipe2 quotactl getdents64 lseek read write readv writev pread64 pwrite64 preadv
        pwritev sendfile pselect6 ppoll signalfd4 vmsplice splice tee readlinkat newfstatat fstat sync fsync fdatasync
        sync_file_range timerfd_create timerfd_settime timerfd_gettime utimensat acct capget capset personality exit
        exit_group waitid set_tid_address unshare futex set_robust_list get_robust_list nanosleep getitimer setitimer
        kexec_load init_module delete_module timer_create timer_gettime timer_getoverrun timer_settime timer_delete
        clock_settime clock_gettime clock_getres clock_nanosleep syslog ptrace sched_setparam sched_setscheduler
        sched_getscheduler sched_getparam sched_setaffinity sched_getaffinity sched_yield sched_get_priority_max
        sched_get_priority_min sched_rr_get_interval restart_syscall kill tkill tgkill sigaltstack rt_sigsuspend
        rt_sigaction rt_sigprocmask rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigreturn setpriority getpriority
        reboot setregid setgid setreuid setuid setresuid getresuid setresgid getresgid setfsuid setfsgid times setpgid
        getpgid getsid setsid getgroups setgroups uname sethostname setdomainname getrlimit setrlimit getrusage umask
        prctl getcpu gettimeofday settimeofday adjtimex getpid getppid getuid geteuid getgid getegid gettid sysinfo
        mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr msgget msgctl msgrcv msgsnd semget semctl
        semtimedop semop shmget shmctl shmat shmdt socket socketpair bind listen accept connect getsockname getpeername
        sendto recvfrom setsockopt getsockopt shutdown sendmsg recvmsg readahead brk munmap mremap add_key request_key
        keyctl clone execve mmap fadvise64 swapon swapoff mprotect msync mlock munlock mlockall munlockall mincore
        madvise remap_file_pages mbind get_mempolicy set_mempolicy migrate_pages move_pages rt_tgsigqueueinfo
        perf_event_open accept4 recvmmsg -16 wait4 prlimit64 fanotify_init fanotify_mark name_to_handle_at
        open_by_handle_at clock_adjtime syncfs setns sendmmsg process_vm_readv process_vm_writev kcmp finit_module
        sched_setattr sched_getattr renameat2 seccomp getrandom memfd_create bpf execveat userfaultfd membarrier mlock2
        copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx io_pgetevents rseq kexec_file_load
        -129 pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount fsopen fsconfig
        fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2 process_madvise epoll_pwait2
        mount_setattr quotactl_fd landlock_create_ruleset landlock_add_rule landlock_restrict_self memfd_secret
        process_mrelease futex_waitv set_mempolicy_home_node
    """,
}

#: Syscall names by number, per architecture: ``SYSCALL_NAMES["x86_64"][83] == "mkdir"`` (None: unassigned).
SYSCALL_NAMES: dict[str, tuple[str | None, ...]] = {
    arch: tuple(name for token in table.split() for name in ([None] * int(token[1:]) if token[0] == "-" else [token]))
    for arch, table in _SYSCALL_TABLES.items()
}
#: Syscall numbers by name, per architecture (the inverse of :data:`SYSCALL_NAMES`).
SYSCALL_NUMBERS: dict[str, dict[str, int]] = {
    arch: {name: number for number, name in enumerate(names) if name} for arch, names in SYSCALL_NAMES.items()
}
#: ``AUDIT_ARCH_*`` values (audit records' ``arch=``, seccomp's ``si_arch``) → architecture names.
AUDIT_ARCHES = {0xC000003E: "x86_64", 0x40000003: "i386", 0xC00000B7: "aarch64"}


def syscall_by_number(arch: str, number: int) -> str:
    """The name of syscall ``number`` on ``arch``; ``syscall_<number>`` when the table has no such syscall."""
    names = SYSCALL_NAMES.get(arch, ())
    name = names[number] if 0 <= number < len(names) else None
    return name or f"syscall_{number}"


#: How kernels spell a syscall's entry point, and the LSM prefix; stripped to find the syscall's own name.
_HOOK_PREFIXES = (
    "__x64_sys_", "__arm64_sys_", "__ia32_compat_sys_", "__ia32_sys_", "__se_sys_", "__do_sys_", "__sys_",
    "ksys_", "sys_enter_", "sys_exit_", "sys_", "security_",
)


@lru_cache(maxsize=1024)
def syscall_name(hook: str) -> str:
    """``openat`` for ``__x64_sys_openat``, ``sys_enter_openat``, ``sys_openat``; ``sb_mount`` for
    ``security_sb_mount``: the name :data:`SYSCALL_KINDS` knows, whatever the sensor hooked (remembered: a
    sensor hooks a few dozen functions, and every record names one)."""
    for prefix in _HOOK_PREFIXES:
        if hook.startswith(prefix):
            return hook[len(prefix) :]
    return hook


_K8S_FIELDS = ("namespace", "pod", "pod_uid", "container_id", "container_name", "image", "service_account")


def text_field(mapping: dict[str, Any], name: str) -> str:
    """A string field of a record that crossed Kafka: anything else (absent, null, a number) reads as ""."""
    value = mapping.get(name)
    return value if isinstance(value, str) else ""


def int_field(mapping: dict[str, Any], name: str) -> int:
    """An integer field of a record that crossed Kafka (booleans and floats are not integers here); else 0."""
    value = mapping.get(name)
    return value if type(value) is int else 0


def node_k8s_context(value: Any) -> K8sContext:
    """The ``k8s`` object the node collector added to a record (eBPF, containerd, kernel audit), as the envelope's
    context; wrong types become empty values, since the object crossed Kafka."""
    if not isinstance(value, dict):
        return K8sContext()
    labels = value.get("labels")
    return K8sContext(
        **{name: text_field(value, name) for name in _K8S_FIELDS},
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )


def node_container(k8s: K8sContext) -> Container:
    """The container of a node sensor's record (eBPF, kernel audit): the one the node collector resolved from the
    process's cgroup. Its runtime stays empty: the cgroup path does not say which runtime made it."""
    return Container(id=k8s.container_id, name=k8s.container_name, image=k8s.image)


def node_record_key(record: dict[str, Any], cluster: str) -> str:
    """The correlation key of a record the node collector enriched with a ``k8s`` object (eBPF, containerd,
    kernel audit): its pod, else its namespace, else, for a host process, its node (see :func:`host_identity`)."""
    if is_health_record(record):
        return health_key(cluster)
    k8s = record.get("k8s")
    k8s = k8s if isinstance(k8s, dict) else {}
    namespace, pod = k8s.get("namespace"), k8s.get("pod")
    namespace = namespace if isinstance(namespace, str) else ""
    pod = pod if isinstance(pod, str) else ""
    return correlation_key_for(cluster, namespace, pod, host_identity(record, namespace, pod))


def host_identity(record: dict[str, Any], namespace: str, pod: str) -> str:
    """``node:<node>`` for a record of a host process (neither pod nor namespace) the node collector named its
    node in, else empty.

    Node sources put it in ``actor.user``, which :attr:`~vigil.event.Event.correlation_key` falls back to, so each
    node's host activity keeps to one Kafka partition (its sequences stay together) and the nodes spread over all
    partitions, instead of every node's host activity sharing the one key ``<cluster>/~``. It comes from the record,
    not from the worker's settings, so the key of a record and of its event always agree.
    """
    node = record.get("node")
    return f"node:{node}" if isinstance(node, str) and node and not (namespace or pod) else ""


def with_health_records(check: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """A source's record check that also accepts the collector's health records about that source."""

    def check_record(record: dict[str, Any]) -> None:
        if is_health_record(record):
            check_health_record(record)
        else:
            check(record)

    return check_record


def split_json_records(
    payload: bytes, max_record_bytes: int, check: Callable[[dict[str, Any]], None]
) -> Iterator[dict[str, Any] | Rejected]:
    """The JSON objects in one payload (a line, or a whole file holding one object or an array of them);
    never raises. ``check`` refuses a record that is not the sensor's by raising RecordRejected.

    Bad input becomes a :class:`Rejected` with one of the stable reasons ``invalid_utf8``, ``not_json``,
    ``too_large``, ``wrong_kind``, ``missing_field``; good records of the same payload are still yielded.
    """
    if len(payload) > max_record_bytes:
        yield Rejected("too_large", f"record of {len(payload)} bytes exceeds the limit of {max_record_bytes}", payload)
        return
    try:
        document = orjson.loads(payload)
        if payload.count(b"{") + payload.count(b"[") > _DEEP_BRACKETS:
            _check_depth(document)
    except RecordRejected as exc:
        yield Rejected(exc.reason, exc.detail, payload)
        return
    except orjson.JSONDecodeError as exc:
        yield Rejected(*_decode_failure(payload, exc), payload)
        return
    if type(document) is dict:
        yield _checked(document, check, payload)
    elif type(document) is list:
        for index, item in enumerate(document):
            record = _checked(item, check, b"")
            if type(record) is Rejected:
                record.detail = f"[{index}]: {record.detail}"
                record.raw = orjson.dumps(item)
            yield record
    else:
        yield Rejected("wrong_kind", f"a JSON {type(document).__name__} is not a record", payload)


def _checked(item: Any, check: Callable[[dict[str, Any]], None], raw: bytes) -> dict[str, Any] | Rejected:
    if type(item) is not dict:
        return Rejected("wrong_kind", f"a JSON {type(item).__name__} is not a record", raw)
    try:
        check(item)
    except RecordRejected as exc:
        return Rejected(exc.reason, exc.detail, raw)
    return item


def _decode_failure(payload: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str]:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as bad:
        return "invalid_utf8", f"invalid UTF-8 at byte {bad.start}"
    return "not_json", str(exc)


def _check_depth(document: Any) -> None:
    nested: Any = document
    for _ in range(_ENVELOPE_LEVELS):
        nested = (nested,)
    try:
        orjson.dumps(nested)
    except orjson.JSONEncodeError:
        raise RecordRejected("not_json", f"nested deeper than {_DEEP_BRACKETS} levels") from None


def shown(value: Any) -> str:
    """A hostile value, bounded for a detail message (the record itself is kept whole in ``raw``)."""
    if type(value) is str:
        return repr(value[:80])
    if value is None or type(value) in (bool, int, float):
        return repr(value)
    return f"a JSON {type(value).__name__}"
