// SPDX-License-Identifier: GPL-2.0
//
// vigil's syscall sensor: a CO-RE program built against the running kernel's BTF (vmlinux.h from bpftool).
//
// Only tracepoints, raw tracepoints and tp_btf are used: kprobes, fentry and BPF-LSM are unavailable on the
// kernels vigil targets. Every syscall enters one program (on_sys_enter), which adds it to its cgroup's syscall
// profile (unless runc's init makes it: see is_runc_init) and hands the syscalls the sensor records to their
// handler, chosen through a table user space fills for the node's architecture. Everything that can be
// decided in the kernel is decided here, so user space sees only records worth keeping: file opens are matched
// against the configured rules (prefix and/or suffix) before a record is written (a path the kernel resolves to
// another spelling, relative or with ".", ".." or "//", is matched at the open's exit on the opened file's own
// path) and a process's repeats of one open are counted rather than recorded, ptrace keeps only the requests
// that let one process control another, sockets only packet and raw ones, dups only of inet sockets onto
// descriptors 0-2, unix connects only to container runtimes' sockets, userfaultfd only by users other than
// root, and the sensor's own process is ignored.
// Records go to one ring buffer; every record it could not take is counted in the per-CPU ``losses``
// array, and every record written in ``written``, both of which user space exports.
//
// Record layouts are mirrored in records.py (struct formats); change both together.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define PATH_LEN 256
#define ARGS_LEN 1024
#define NAME_LEN 64
#define MAX_DEPTH 16
#define ENV_VARS 9 /* the environment variables an exec record carries (env_names) */
#define EXE_DELETED 1 /* exec_record.exe_flags: the executable's inode had no links (i_nlink 0) */
#define ENV_VALUE_LEN 128 /* a value's bytes kept, with its terminating zero */
#define ENV_BLOCK 1024 /* bytes of the environment read at once (a power of two) */
#define ENV_SLACK 16 /* read past a block: the longest name, for a variable that starts at the block's end */
#define ENV_WORDS 32768 /* the scan's bound, in 8-byte words: 256 KiB of environment */
#define ENV_STEP_WORDS 16 /* words read per bpf_loop step at most */
#define WALK_STEPS 24 /* path components plus mount crossings */
#define MAX_RULES 64
#define PREFIX_WORDS 8
#define SUFFIX_LEN 32

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_TYPE_MASK 0xf
#define UNIX_PATH_LEN 108
#define UNIX_PATH_BUF 128 /* a power of two: indexes are bounded by masking */
#define O_ACCMODE 3
#define O_WRONLY 1
#define O_RDWR 2
#define O_CREAT 0100
#define O_TRUNC 01000
#define S_IFMT 00170000
#define S_IFSOCK 0140000

enum record_type {
	REC_EXEC = 1,
	REC_EXIT = 2,
	REC_OPEN = 3,
	REC_CONNECT = 4,
	REC_ACCEPT = 5,
	REC_LISTEN = 6,
	REC_PTRACE = 7,
	REC_SETID = 8,
	REC_NS_CHANGE = 9,
	REC_MOUNT = 10,
	REC_MODULE = 11,
	REC_BPF = 12,
	REC_MEMFD = 13,
	REC_FILE_WRITE = 14,
	REC_CGROUP_RMDIR = 15,
	REC_SECCOMP = 16,
	REC_SOCKET = 17,
	REC_STDIO_DUP = 18,
	REC_USERFAULTFD = 19,
	REC_VM_WRITE = 20,
	REC_UNIX_CONNECT = 21,
	REC_FILE_CHANGE = 22,
	REC_WX_MEMORY = 23,
	REC_CGROUP_MKDIR = 24,
};

enum setid_call { SET_UID, SET_GID, SET_REUID, SET_REGID, SET_RESUID, SET_RESGID, SET_FSUID, SET_FSGID };

struct header {
	u64 time_ns; /* CLOCK_BOOTTIME */
	u64 cgroup_id;
	u32 type;
	u32 pid;
	u32 tid;
	u32 ppid;
	u32 uid;
	u32 gid;
	char comm[16];
};

struct exec_record {
	struct header h;
	u32 args_len;
	u32 exe_depth;
	u32 cwd_depth;
	u32 parent_exe_depth;
	u32 euid; /* effective ids after the exec: a setuid/setgid binary makes them differ from the real ones */
	u32 egid;
	u32 exe_flags; /* EXE_DELETED: the executable had no links left when it ran (unlinked, or a memory file) */
	u32 exe_pad;
	char args[ARGS_LEN];
	char exe[MAX_DEPTH][NAME_LEN];
	char cwd[MAX_DEPTH][NAME_LEN];
	char parent_exe[MAX_DEPTH][NAME_LEN];
	u32 env_present; /* bit i: env_names[i] is in the new process's environment, its value in env[i] */
	u32 env_cut; /* 1: the environment was longer than the scan's bound (ENV_WORDS words) */
	u16 env_len[ENV_VARS];
	u16 env_pad;
	char env[ENV_VARS][ENV_VALUE_LEN];
};

struct exit_record {
	struct header h;
	u32 exit_code;
	u32 pad;
};

struct open_record {
	struct header h;
	u32 flags;
	u32 mode;
	u32 path_len;
	u32 repeats; /* identical opens suppressed since the last record of this one (see recent_opens) */
	char path[PATH_LEN];
};

struct sock_record {
	struct header h;
	u16 family;
	u16 protocol;
	u16 local_port;
	u16 remote_port;
	u8 local_addr[16];
	u8 remote_addr[16];
	s32 fd;
	u32 pad;
};

/* A packet socket (any type) or a raw inet socket was asked for (socket(2) at entry). */
struct socket_record {
	struct header h;
	u32 family;
	u32 type; /* with SOCK_NONBLOCK/SOCK_CLOEXEC masked off */
	u32 protocol;
	u32 pad;
};

/* An inet socket duplicated onto standard input, output or error (dup, dup2, dup3, fcntl F_DUPFD at entry): the
 * socket's ends as the kernel has them, ``sock.fd`` the socket's descriptor. */
struct dup_record {
	struct sock_record sock;
	u32 call; /* 0: dup, 2: dup2, 3: dup3, 4: fcntl(F_DUPFD), 5: connect (of a socket that is descriptor 0-2) */
	s32 new_fd;
};

/* userfaultfd(2) by a process whose real uid is not root. */
struct userfaultfd_record {
	struct header h;
	u32 flags;
	u32 pad;
};

/* process_vm_writev(2) into a process other than the caller. */
struct vm_write_record {
	struct header h;
	u32 target_pid;
	u32 iovecs; /* riovcnt: how many places in the target were written */
};

/* connect(2) of a unix socket to a container runtime's API socket (see RUNTIME_SOCKETS). */
struct unix_connect_record {
	struct header h;
	s32 fd;
	u32 path_len;
	char path[UNIX_PATH_BUF];
};

/* A watched path removed, renamed, linked, made (mkdir), re-permissioned or given explicit times (utimensat and
 * the older calls with times that are not "now": timestomping), or any path given the setuid or setgid bit (at
 * entry: the attempt). ``op`` is the syscall (enum file_op); ``path`` its first path (a rename's or
 * link's old name, a symlink's target), ``other`` the new name of a rename, link or symlink. */
struct file_change_record {
	struct header h;
	u32 op;
	u32 mode; /* chmod's and mkdir's mode, unlinkat's flags */
	s32 uid;  /* chown's owner and group (-1: unchanged) */
	s32 gid;
	u32 path_len;
	u32 other_len;
	s64 mtime; /* a time change's modification time (seconds since the epoch); -1 when it sets only the access time */
	char path[PATH_LEN];
	char other[PATH_LEN];
};

/* Memory mapped or re-protected writable and executable at once (code written at run time, then run: JITs, and
 * shellcode loaders), recorded once per process. */
struct wx_record {
	struct header h;
	u32 call; /* 0: mprotect, 1: pkey_mprotect, 2: mmap */
	u32 prot;
	u64 len;
	u32 flags; /* mmap's */
	u32 pad;
};

enum file_op {
	FILE_OP_UNLINK, FILE_OP_UNLINKAT, FILE_OP_RMDIR, FILE_OP_RENAME, FILE_OP_RENAMEAT, FILE_OP_RENAMEAT2, FILE_OP_MKDIR, FILE_OP_MKDIRAT, FILE_OP_CHMOD,
	FILE_OP_FCHMODAT, FILE_OP_LINK, FILE_OP_LINKAT, FILE_OP_SYMLINK, FILE_OP_SYMLINKAT, FILE_OP_CHOWN, FILE_OP_LCHOWN, FILE_OP_FCHOWNAT,
	FILE_OP_UTIMENSAT, FILE_OP_UTIMES, FILE_OP_FUTIMESAT, FILE_OP_UTIME,
};

struct ptrace_record {
	struct header h;
	s64 request;
	u32 target_pid;
	u32 pad;
};

struct setid_record {
	struct header h;
	u32 call;
	s32 ids[3];
};

struct ns_record {
	struct header h;
	u32 setns; /* 0: unshare(flags), 1: setns(fd, nstype) */
	u32 flags;
	s32 fd;
	u32 pad;
};

struct mount_record {
	struct header h;
	u64 flags;
	char source[PATH_LEN];
	char target[PATH_LEN];
	char fstype[32];
};

struct module_record {
	struct header h;
	u32 from_fd; /* 0: init_module, 1: finit_module */
	u32 flags;
	s32 fd;
	u32 pad;
	char name[NAME_LEN];
	char args[128];
};

struct bpf_record {
	struct header h;
	u32 cmd;
	u32 prog_type;
	char prog_name[16];
};

struct memfd_record {
	struct header h;
	u32 flags;
	u32 pad;
	char name[PATH_LEN];
};

/* A cgroup v2 directory was made or removed (the header's cgroup is the maker's or remover's, ``id`` the
 * directory's). Made: user space learns which container the id names before any record of the container's
 * processes, which the ring buffer delivers after this one; a container that exits before user space reads its
 * records has no directory left to resolve. Removed: user space reports what its processes did without waiting
 * for the next flush. */
struct cgroup_dir_record {
	struct header h;
	u64 id;
	char path[PATH_LEN];
};

/* seccomp made the kernel send SIGSYS: a filter returned SECCOMP_RET_TRAP or one of the KILL actions. */
struct seccomp_record {
	struct header h;
	s32 syscall;
	u32 arch;    /* AUDIT_ARCH_* of the syscall */
	u32 killed;  /* 1: the filter's verdict kills the task (SECCOMP_RET_KILL_*), 0: SECCOMP_RET_TRAP */
	s32 data;    /* SECCOMP_RET_DATA of the verdict */
};

/* What the processes of one cgroup did since user space last took its entry: which syscalls they used
 * (one bit per number; 32-bit tasks on a 64-bit kernel from COMPAT_BASE on) and how often they made
 * syscalls of each class. Per CPU, so the hot path writes its own cache line without atomics. */
#define SYSCALL_SLOTS 1024
#define COMPAT_BASE 512
enum syscall_class { CLASS_OTHER, CLASS_FORK, CLASS_EXEC, CLASS_OPEN, CLASS_CONNECT };
enum syscall_handler {
	HANDLE_NONE, HANDLE_OPEN, HANDLE_OPENAT, HANDLE_CREAT, HANDLE_OPENAT2, HANDLE_CONNECT, HANDLE_LISTEN,
	HANDLE_PTRACE, HANDLE_SETID, HANDLE_UNSHARE, HANDLE_SETNS, HANDLE_MOUNT, HANDLE_INIT_MODULE,
	HANDLE_FINIT_MODULE, HANDLE_BPF, HANDLE_MEMFD_CREATE, HANDLE_SOCKET, HANDLE_DUP2, HANDLE_DUP3,
	HANDLE_USERFAULTFD, HANDLE_PROCESS_VM_WRITEV, HANDLE_DUP, HANDLE_FCNTL, HANDLE_FILE_CHANGE, HANDLE_WX_MEMORY,
	HANDLE_SEND,
};
#define CLASS_SLOTS 8 /* a power of two: the verifier bounds an index by masking */

struct cgroup_syscalls {
	u64 used[SYSCALL_SLOTS / 64];
	u64 counts[2][CLASS_SLOTS]; /* [native, compat][CLASS_OTHER]: every syscall; [..][class]: that class's */
};

/* One file-open rule: the path must start with ``prefix`` (compared 8 bytes at a time under ``mask``) and
 * end with ``suffix``; either may be empty. ``write_only`` rules match opens that can write only. */
struct open_rule {
	u64 prefix[PREFIX_WORDS];
	u64 mask[PREFIX_WORDS];
	char suffix[SUFFIX_LEN];
	u32 prefix_len;
	u32 suffix_len;
	u32 write_only;
	u32 pad;
};

/* Rules by index, one bit each (MAX_RULES is 64): those that apply to opens for reading, and to writes. */
struct rule_set {
	u64 reads;
	u64 writes;
};

struct sensor_config {
	u32 rule_count;
	u32 self_tgid;
	u64 wakeup_bytes;
	u64 repeat_window_ns;
	u32 profiles; /* aggregate per-cgroup syscall profiles */
	u32 pad;
	struct rule_set short_rules; /* rules whose prefix is under 4 bytes: any path may match them */
};

/* A process opening the same watched path with the same flags again within the repeat window says nothing
 * new: the repeat is counted here, and the next record of that open carries the count. */
struct open_key {
	u32 tgid;
	u32 flags;
	u64 path_hash;
};

struct open_seen {
	u64 time_ns;
	u32 suppressed;
	u32 pad;
};


struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* Records lost: [0] the ring buffer was full (the reader fell behind), [1] it had room but the kernel could
 * not take its lock in time (seen rarely on busy virtual machines). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64[2]);
} losses SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096); /* sized by user space */
	__type(key, u64); /* cgroup id */
	__type(value, struct cgroup_syscalls);
} cgroup_syscalls SEC(".maps");

/* The profile of the cgroup whose task last made a syscall on this CPU, added into ``cgroup_syscalls`` only
 * when a task of another cgroup makes one here. Every syscall updates its cgroup's profile; a hash lookup for
 * each took ~50 ns, while a CPU changes cgroups only when it switches between tasks of different ones. User
 * space, before it takes entries out of ``cgroup_syscalls``, makes a syscall on each CPU whose slot holds what it
 * is about to take, which adds that slot (see profiles.py). ``cgroup_id`` 0 is an empty slot (no cgroup has id 0). */
struct profile_slot {
	u64 cgroup_id;
	struct cgroup_syscalls syscalls;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct profile_slot);
} profile_slots SEC(".maps");

/* What the sensor does with each syscall number (native, then compat from COMPAT_BASE): filled by user space
 * from its tables for the node's architecture, since numbers differ between architectures and names do not.
 * Bits 0-7: the counter class (enum syscall_class); 8-15: the handler that records it (enum syscall_handler,
 * native numbers only); 16-23: the handler's variant (enum setid_call for HANDLE_SETID). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALL_SLOTS);
	__type(key, u32);
	__type(value, u32);
} syscall_table SEC(".maps");

/* Syscalls of cgroups the full ``cgroup_syscalls`` table had no room for (per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} unprofiled SEC(".maps");

/* Records written, by record type, in one value so that user space reads them all in one lookup (the
 * metric of records captured then costs user space nothing per record). */
#define TYPE_SLOTS 32
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64[TYPE_SLOTS]);
} written SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, u32);
	__type(value, struct open_rule);
} open_rules SEC(".maps");

/* The rules a path may match, by how its prefix starts: slot HEAD_SLOTS4 + hash of its first 8 bytes for
 * prefixes of 8 bytes or more, slot hash of its first 4 bytes for prefixes of 4 to 7 (rules of colliding
 * prefixes share a slot: a rule named here is a candidate, which the full match decides). Two array lookups of a
 * path's first bytes name the only rules to match it against, whatever the number of rules: most opens are of
 * paths no rule starts like, /etc/ld.so.cache and /etc/hostname as much as /usr/lib/... */
#define HEAD_SLOTS4 256
#define HEAD_SLOTS 512
#define HEAD_HASH 0x9e3779b97f4a7c15ULL /* Fibonacci hashing: the top 8 bits of the product */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HEAD_SLOTS);
	__type(key, u32);
	__type(value, struct rule_set);
} rule_heads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sensor_config);
} sensor_config SEC(".maps");

/* An open record built here and sent only when a rule matches; a path resolved at the open's exit is walked
 * into ``names`` and joined into ``rec.path`` (``slack`` takes a last name written past its end). */
struct open_scratch {
	struct open_record rec;
	char slack[NAME_LEN];
	char names[MAX_DEPTH][NAME_LEN];
	char other[PATH_LEN]; /* a file change's second path, or its relative name while the first is joined */
	u64 other_slack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct open_scratch);
} scratch SEC(".maps");

/* An open whose path the kernel resolves differently from its spelling (relative, or with ".", ".." or "//"
 * components), kept in its thread's local storage from the open's entry to its exit: the rules are matched there,
 * on the path the opened file has. Every open's exit asks; a thread that never deferred one has no storage, which
 * the kernel answers with one load (a hash map lookup took ~50 ns). */
struct pending_open {
	u32 flags;
	u32 mode;
	u32 pending; /* 1 from the entry that deferred the open to its exit */
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_open);
} pending_opens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct open_key);
	__type(value, struct open_seen);
} recent_opens SEC(".maps");

/* Processes whose writable and executable memory is recorded already, by thread group and its start time (a
 * reused pid is another process). */
struct process_key {
	u32 tgid;
	u32 pad;
	u64 start_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct process_key);
	__type(value, u8);
} wx_processes SEC(".maps");

/* UDP destinations a process sent datagrams to without connecting (sendto, sendmsg, sendmmsg with an address),
 * by process and destination port and family (``process_key.pad``): each is recorded once. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct process_key);
	__type(value, u8);
} udp_destinations SEC(".maps");

static const u32 ZERO = 0;

static __always_inline void count_loss(u64 size)
{
	u64 *counts = bpf_map_lookup_elem(&losses, &ZERO);
	if (!counts)
		return;
	bool full = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size + 8 > bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	counts[full ? 0 : 1]++;
}

/* True when the current process is the sensor itself (its own activity is not telemetry). */
static __always_inline bool is_self(void)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	return cfg && cfg->self_tgid == (u32)(bpf_get_current_pid_tgid() >> 32);
}

/* Wake the reader only when the data waiting crosses the threshold with this record: a wakeup per record
 * would cost the traced workload more than the record itself, and one while the reader is behind anyway
 * would be wasted. The reader polls with a timeout, so a quiet buffer is still read within it. */
static __always_inline u64 wakeup_flag(u64 waiting, u64 size)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	u64 threshold = cfg ? cfg->wakeup_bytes : 0;
	return waiting >= threshold && waiting - size < threshold ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void count_written(u32 type)
{
	u64 *counts = bpf_map_lookup_elem(&written, &ZERO);
	if (counts)
		counts[type & (TYPE_SLOTS - 1)]++;
}

/* Commit a reserved record of ``size`` bytes (its space, and the 8-byte record header, count as waiting). */
static __always_inline void submit(void *rec, u64 size)
{
	count_written(((struct header *)rec)->type);
	bpf_ringbuf_submit(rec, wakeup_flag(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA), size + 8));
}

/* The current task's cgroup v2 id, what bpf_get_current_cgroup_id() returns, loaded through the task's BTF
 * pointers: the helper took ~60 ns a call on the measured kernel (the loads a few), and on_sys_enter needs the
 * id for every syscall. */
static __always_inline u64 current_cgroup_id(struct task_struct *task)
{
	return task->cgroups->dfl_cgrp->kn->id;
}

static __always_inline void fill_header(struct header *h, u32 type)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u64 uid_gid = bpf_get_current_uid_gid();

	h->time_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = current_cgroup_id(task);
	h->type = type;
	h->pid = pid_tgid >> 32;
	h->tid = (u32)pid_tgid;
	h->ppid = task->real_parent->tgid;
	h->uid = (u32)uid_gid;
	h->gid = uid_gid >> 32;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Reserve a record of ``size`` bytes with its header filled, or count the loss and return NULL. */
static __always_inline void *reserve(u64 size, u32 type)
{
	struct header *h = bpf_ringbuf_reserve(&events, size, 0);
	if (!h) {
		count_loss(size);
		return NULL;
	}
	fill_header(h, type);
	return h;
}

/* State of one path walk, stepped by bpf_loop so the verifier checks one step instead of every path. */
struct walk {
	struct vfsmount *vfsmnt;
	struct dentry *dentry;
	struct mount *mnt;
	struct vfsmount *root_mnt;
	struct dentry *root_dentry;
	char (*names)[NAME_LEN];
	u32 depth;
};

static long walk_step(u64 index, void *data)
{
	struct walk *w = data;
	struct dentry *dentry = w->dentry; /* locals: CO-RE reads must not see the walk struct itself */
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;

	if (!dentry || (dentry == w->root_dentry && vfsmnt == w->root_mnt))
		return 1;
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	if (dentry == parent && dentry != mnt_root) {
		/* A file of no directory (a memfd's "memfd:<name>", a pipe's or socket's): the last name, if it has one */
		u32 depth = w->depth;
		if (depth < MAX_DEPTH &&
		    bpf_probe_read_kernel_str(w->names[depth], NAME_LEN, BPF_CORE_READ(dentry, d_name.name)) > 1)
			w->depth = depth + 1;
		return 1;
	}
	if (dentry == mnt_root) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt)
			return 1;
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->vfsmnt = (void *)up + bpf_core_field_offset(struct mount, mnt);
		return 0;
	}
	u32 depth = w->depth;
	if (depth >= MAX_DEPTH)
		return 1;
	bpf_probe_read_kernel_str(w->names[depth], NAME_LEN, BPF_CORE_READ(dentry, d_name.name));
	w->depth = depth + 1;
	w->dentry = parent;
	return 0;
}

/* The names of a path's components, leaf first, up to the task's root (like d_path, crossing mounts). */
static __always_inline u32 walk_path(struct vfsmount *vfsmnt, struct dentry *dentry, struct path *root,
				     char names[MAX_DEPTH][NAME_LEN])
{
	struct walk w = {
		.vfsmnt = vfsmnt,
		.dentry = dentry,
		.mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt),
		.root_mnt = BPF_CORE_READ(root, mnt),
		.root_dentry = BPF_CORE_READ(root, dentry),
		.names = names,
	};
	bpf_loop(WALK_STEPS, walk_step, &w, 0);
	return w.depth;
}

static __always_inline u32 walk_file(struct file *file, struct path *root, char names[MAX_DEPTH][NAME_LEN])
{
	if (!file)
		return 0;
	return walk_path(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry), root, names);
}

/* The only environment variables that leave the kernel: the dynamic loader's injection points and the proxy
 * variables download tools obey (environments hold secrets: every other variable is read only to step over it).
 * The order is user space's (ENV_NAMES in vigil/event.py); each name ends with its '='. */
union env_name {
	char c[16];
	u64 w[2];
};
static const union env_name env_names[ENV_VARS] = {
	{ .c = "LD_PRELOAD=" }, { .c = "LD_LIBRARY_PATH=" }, { .c = "LD_AUDIT=" }, { .c = "HTTP_PROXY=" },
	{ .c = "HTTPS_PROXY=" }, { .c = "ALL_PROXY=" }, { .c = "http_proxy=" }, { .c = "https_proxy=" },
	{ .c = "all_proxy=" },
};
#define TAIL_MASK(len) ((len) >= 16 ? ~0ULL : (1ULL << (((len) - 8) * 8)) - 1) /* every name is 9-16 bytes */
static const u64 env_tail_masks[ENV_VARS] = {
	TAIL_MASK(11), TAIL_MASK(16), TAIL_MASK(9), TAIL_MASK(11), TAIL_MASK(12),
	TAIL_MASK(10), TAIL_MASK(11), TAIL_MASK(12), TAIL_MASK(10),
};
static const u32 env_name_lens[ENV_VARS] = { 11, 16, 9, 11, 12, 10, 11, 12, 10 };

#define BYTES_01 0x0101010101010101ULL
#define BYTES_7F 0x7f7f7f7f7f7f7f7fULL
#define BYTES_80 0x8080808080808080ULL

/* The top bit of each byte of ``word`` that equals ``c`` (exactly: no borrow crosses bytes). */
static __always_inline u64 bytes_equal(u64 word, u8 c)
{
	u64 v = word ^ (BYTES_01 * c);
	return ~(((v & BYTES_7F) + BYTES_7F) | v) & BYTES_80;
}

/* The environment is read a block at a time into a per-CPU buffer (one bpf_probe_read_user per ENV_BLOCK bytes) and
 * scanned a word at a time for the variables' starts: a read and a bpf_loop step per variable cost ~120 ns, 35 us
 * an exec for the 300 variables of a namespace with many services. */
struct env_buffer {
	char data[ENV_BLOCK + ENV_SLACK];
	u64 zero; /* never written: the scan's first offset (see scan_env) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct env_buffer);
} env_buffer SEC(".maps");

/* State of the environment scan, 8-byte words at a time (see env_step). */
struct env_scan {
	unsigned long start; /* mm->env_start */
	u64 len; /* the bytes scanned: the environment's, up to the bound */
	u64 next; /* the offset of the next word */
	u64 candidates; /* the last word's bytes that start a variable with a name's first letter (top bits), not
			 * compared yet */
	u64 after_zero; /* 0x80: the last byte of the word ended a variable (or the scan is at the start) */
	struct env_buffer *buffer;
	struct exec_record *rec;
};

/* The top bit of each byte of ``word`` that is a name's first letter: a variable starting otherwise is not
 * compared. */
static __always_inline u64 env_initials(u64 word)
{
	return bytes_equal(word, 'L') | bytes_equal(word, 'H') | bytes_equal(word, 'A') | bytes_equal(word, 'h') |
	       bytes_equal(word, 'a');
}

/* A variable's first bytes (at ``at`` in the environment, ``offset`` in the buffer) against the names: a match copies
 * its value (the first occurrence of a name, as getenv finds it), bounded. The name's own '=' and a variable's
 * terminating zero make a shorter variable never match. */
static __always_inline void env_match(struct env_scan *s, u32 offset, u64 at)
{
	char *bytes = &s->buffer->data[offset & (ENV_BLOCK - 1)];
	u64 w0 = *(u64 *)bytes, w1 = *(u64 *)(bytes + 8);
	struct exec_record *rec = s->rec;

	for (u32 i = 0; i < ENV_VARS; i++) {
		if (w0 != env_names[i].w[0] || ((w1 ^ env_names[i].w[1]) & env_tail_masks[i]))
			continue;
		if (rec->env_present & (1U << i))
			return;
		long len = bpf_probe_read_user_str(rec->env[i], ENV_VALUE_LEN, (void *)(s->start + at + env_name_lens[i]));
		if (len > 0) {
			rec->env_present |= 1U << i;
			rec->env_len[i] = len - 1;
		}
		return;
	}
}

/* Read the next word (a new block at each block's first word) and find its candidates; 1 at the end. */
static __always_inline long env_next_word(struct env_scan *s)
{
	u64 at = s->next;
	if (at >= s->len)
		return 1;
	u32 offset = at & (ENV_BLOCK - 1);
	if (!offset) {
		u64 size = s->len - at;
		if (size > ENV_BLOCK + ENV_SLACK)
			size = ENV_BLOCK + ENV_SLACK;
		if (bpf_probe_read_user(s->buffer->data, size, (void *)(s->start + at)))
			return 1;
	}
	u64 word = *(u64 *)&s->buffer->data[offset & (ENV_BLOCK - 8)];
	u64 zeros = bytes_equal(word, 0);
	u64 starts = zeros << 8 | s->after_zero; /* bytes that follow a zero: most words have none */
	s->candidates = starts ? starts & env_initials(word) : 0;
	s->after_zero = zeros >> 56 & 0x80;
	s->next = at + 8;
	return 0;
}

/* One step: the current word's first candidate compared, or up to ENV_STEP_WORDS words read until one has
 * candidates (a bpf_loop step costs some 20 ns: a word alone is cheaper). One call site of the comparison: the
 * verifier checks it once. */
static long env_step(u64 index, void *data)
{
	struct env_scan *s = data;
	for (u32 word = 0; word < ENV_STEP_WORDS && !s->candidates; word++) {
		if (env_next_word(s))
			return 1;
	}
	if (!s->candidates)
		return 0;
	u64 lowest = s->candidates & -s->candidates;
	s->candidates ^= lowest;
	u32 byte = 7 - ((lowest >> 7) * 0x0706050403020100ULL >> 56); /* lowest is the top bit of byte ``byte`` */
	u64 at = s->next - 8 + byte;
	if (at < s->len)
		env_match(s, (at & (ENV_BLOCK - 1)), at);
	return 0;
}

/* The selected variables of the new process's environment (mm->env_start..env_end, written by this exec). Bytes
 * past a short last read are a previous scan's: no variable starts there (``len``), and a variable's own zero
 * ends a comparison before them. */
static __always_inline void scan_env(struct mm_struct *mm, struct exec_record *rec)
{
	unsigned long start = BPF_CORE_READ(mm, env_start), end = BPF_CORE_READ(mm, env_end);
	struct env_scan s = {
		.start = start,
		.len = end - start < ENV_WORDS * 8 ? end - start : ENV_WORDS * 8,
		.after_zero = 0x80,
		.buffer = bpf_map_lookup_elem(&env_buffer, &ZERO),
		.rec = rec,
	};
	rec->env_present = 0;
	rec->env_pad = 0;
	/* The first offset, 0, read from the map: from a constant the verifier would follow the offset word by word
	 * through the steps (it checks a callback until its states repeat) and give up. */
	if (s.buffer && end > start) {
		s.next = s.buffer->zero;
		bpf_loop(ENV_WORDS * 2, env_step, &s, 0);
	}
	rec->env_cut = end - start > s.next;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (is_self())
		return 0;
	struct exec_record *rec = reserve(sizeof(*rec), REC_EXEC);
	if (!rec)
		return 0;
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct path *root = &fs->root; /* an address (CO-RE offset), not a read */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long len = BPF_CORE_READ(mm, arg_end) - start;

	if (len >= ARGS_LEN)
		len = ARGS_LEN - 1;
	rec->args_len = 0;
	if (bpf_probe_read_user(rec->args, len & (ARGS_LEN - 1), (void *)start) == 0)
		rec->args_len = len;
	struct file *exe = BPF_CORE_READ(bprm, file);
	rec->exe_depth = walk_file(exe, root, rec->exe);
	rec->exe_flags = BPF_CORE_READ(exe, f_inode, i_nlink) ? 0 : EXE_DELETED;
	rec->exe_pad = 0;
	rec->cwd_depth = walk_path(BPF_CORE_READ(fs, pwd.mnt), BPF_CORE_READ(fs, pwd.dentry), root, rec->cwd);
	rec->parent_exe_depth = walk_file(BPF_CORE_READ(task, real_parent, mm, exe_file), root, rec->parent_exe);
	rec->euid = BPF_CORE_READ(task, cred, euid.val);
	rec->egid = BPF_CORE_READ(task, cred, egid.val);
	scan_env(mm, rec);
	submit(rec, sizeof(*rec));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task, bool group_dead)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((u32)pid_tgid != (u32)(pid_tgid >> 32) || is_self()) /* threads other than the leader */
		return 0;
	struct exit_record *rec = reserve(sizeof(*rec), REC_EXIT);
	if (!rec)
		return 0;
	rec->exit_code = BPF_CORE_READ(task, exit_code);
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline bool prefix_matches(struct open_rule *rule, u64 *words, u32 path_len)
{
	if (rule->prefix_len > path_len)
		return false;
	for (int w = 0; w < PREFIX_WORDS; w++) {
		if (w * 8 >= rule->prefix_len)
			break;
		if ((words[w] ^ rule->prefix[w]) & rule->mask[w])
			return false;
	}
	return true;
}

static __always_inline bool suffix_matches(struct open_rule *rule, char *path, u32 path_len)
{
	u32 suffix_len = rule->suffix_len;
	if (suffix_len > path_len || suffix_len > SUFFIX_LEN)
		return false;
	u32 start = path_len - suffix_len;
	for (int i = 0; i < SUFFIX_LEN; i++) {
		if (i >= suffix_len)
			break;
		if (path[(start + i) & (PATH_LEN - 1)] != rule->suffix[i])
			return false;
	}
	return true;
}

static __always_inline bool is_write(u32 flags)
{
	return (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR || (flags & (O_CREAT | O_TRUNC));
}

/* Matching a path against the rules, one rule per bpf_loop step: the verifier checks one rule's match instead of
 * every rule's, so MAX_RULES can grow without the program growing. */
struct rule_match {
	char *path; /* 8-byte aligned */
	u64 candidates;
	u32 path_len;
	u32 writes;
	u32 type;
};

static long match_step(u64 index, void *data)
{
	struct rule_match *m = data;
	u32 r = index;
	if (!(m->candidates >> (index & (MAX_RULES - 1)) & 1))
		return 0;
	struct open_rule *rule = bpf_map_lookup_elem(&open_rules, &r);
	if (!rule || (rule->write_only && !m->writes))
		return 0;
	u32 path_len = m->path_len & (PATH_LEN - 1);
	if (prefix_matches(rule, (u64 *)m->path, path_len) && suffix_matches(rule, m->path, path_len)) {
		m->type = rule->write_only ? REC_FILE_WRITE : REC_OPEN;
		return 1;
	}
	return 0;
}

/* REC_FILE_WRITE or REC_OPEN for the first rule the path matches, 0 when none does. */
static __always_inline u32 match_rules(char *path, u32 path_len, u32 flags)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	if (!cfg)
		return 0;
	bool writes = is_write(flags);
	u64 candidates = writes ? cfg->short_rules.writes : cfg->short_rules.reads;
	u32 head4;
	u64 head8;
	__builtin_memcpy(&head4, path, sizeof(head4));
	__builtin_memcpy(&head8, path, sizeof(head8));
	u32 slot = ((u64)head4 * HEAD_HASH) >> 56;
	struct rule_set *starting = bpf_map_lookup_elem(&rule_heads, &slot);
	if (starting)
		candidates |= writes ? starting->writes : starting->reads;
	slot = HEAD_SLOTS4 + ((head8 * HEAD_HASH) >> 56);
	starting = bpf_map_lookup_elem(&rule_heads, &slot);
	if (starting)
		candidates |= writes ? starting->writes : starting->reads;
	if (!candidates)
		return 0;
	struct rule_match m = { .path = path, .candidates = candidates, .path_len = path_len, .writes = writes };
	bpf_loop(cfg->rule_count < MAX_RULES ? cfg->rule_count : MAX_RULES, match_step, &m, 0);
	return m.type;
}

/* FNV-1a over the path's 8-byte words (the bytes past its end masked off: they are left from other paths). */
static __always_inline u64 path_hash(struct open_record *rec, u32 path_len)
{
	u64 *words = (u64 *)rec->path;
	u64 hash = 0xcbf29ce484222325ULL;
	u32 last = path_len / 8;

	for (u32 w = 0; w < PATH_LEN / 8; w++) {
		if (w > last)
			break;
		u64 word = words[w];
		if (w == last)
			word &= (1ULL << ((path_len % 8) * 8)) - 1;
		hash = (hash ^ word) * 0x100000001b3ULL;
	}
	return hash;
}

/* Whether this open repeats one recorded within the window; if not, ``rec->repeats`` gets how many were
 * suppressed since that one, and the open becomes the one later repeats are measured against. */
static __always_inline bool is_repeat(struct open_record *rec, u32 path_len, u32 flags)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	rec->repeats = 0;
	if (!cfg || !cfg->repeat_window_ns)
		return false;
	struct open_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.flags = flags,
		.path_hash = path_hash(rec, path_len),
	};
	u64 now = bpf_ktime_get_boot_ns();
	struct open_seen *seen = bpf_map_lookup_elem(&recent_opens, &key);
	if (seen && now - seen->time_ns < cfg->repeat_window_ns) {
		__sync_fetch_and_add(&seen->suppressed, 1);
		return true;
	}
	if (seen)
		rec->repeats = seen->suppressed;
	struct open_seen fresh = { .time_ns = now };
	bpf_map_update_elem(&recent_opens, &key, &fresh, BPF_ANY);
	return false;
}

/* One word of a path checked for a '/' that starts "//", "/./", "/../", or a last "/." or "/..": each byte that
 * is a '/' against the bytes after it (a bpf_loop step of needs_resolution). */
struct spelling {
	u64 *words;
	u32 path_len;
	u32 found;
	u32 traversal; /* a ".." component: the path climbs out of a directory (as a path traversal attack does) */
};

static long spelling_step(u64 index, void *data)
{
	struct spelling *sp = data;
	u32 w = index & (PATH_LEN / 8 - 1);
	if (w * 8 >= sp->path_len)
		return 1;
	u64 x = sp->words[w], next = sp->words[w + 1]; /* the last word's next is the scratch's slack */
	u64 b1 = x >> 8 | next << 56, b2 = x >> 16 | next << 48, b3 = x >> 24 | next << 40;
	u64 dots = bytes_equal(b2, '.') & (bytes_equal(b3, '/') | bytes_equal(b3, 0));
	u64 dot = bytes_equal(b1, '.') & (bytes_equal(b2, '/') | bytes_equal(b2, 0) | dots);
	u64 slash = bytes_equal(x, '/');
	u64 hits = slash & (bytes_equal(b1, '/') | dot);
	u64 climbs = slash & bytes_equal(b1, '.') & dots;
	u32 left = sp->path_len - w * 8; /* bytes of the path in this word: a '/' past its end is another path's */
	if (left < 8) {
		hits &= (1ULL << (left * 8)) - 1;
		climbs &= (1ULL << (left * 8)) - 1;
	}
	sp->found |= hits != 0;
	sp->traversal = climbs != 0;
	return sp->traversal; /* after a "//" or "." the rest is read for a ".." still */
}

/* Whether the kernel resolves ``path`` to another spelling: it is relative, or has "//", "." or ".." components;
 * ``traversal`` says whether one of them is "..". */
static __always_inline bool needs_resolution(char *path, u32 path_len, u32 *traversal)
{
	struct spelling sp = { .words = (u64 *)path, .path_len = path_len };
	if (path[0] != '/') {
		*traversal = path[0] == '.' && path[1] == '.' && (path[2] == '/' || path[2] == 0);
		if (*traversal)
			return true;
		sp.found = 1; /* relative: resolved anyway, and a later ".." is still looked for */
	}
	bpf_loop(PATH_LEN / 8, spelling_step, &sp, 0);
	*traversal = sp.traversal;
	return sp.found || sp.traversal;
}

/* A "/.ssh/" directory in a path, a byte per bpf_loop step (only opens spelled with ".." come here). */
struct ssh_search {
	char *path;
	u32 path_len;
	u32 found;
};

static long ssh_step(u64 index, void *data)
{
	struct ssh_search *search = data;
	u32 i = index & (PATH_LEN - 1);
	if (i + 6 > search->path_len)
		return 1;
	char *p = search->path;
	search->found = p[i] == '/' && p[(i + 1) & (PATH_LEN - 1)] == '.' && p[(i + 2) & (PATH_LEN - 1)] == 's' &&
			p[(i + 3) & (PATH_LEN - 1)] == 's' && p[(i + 4) & (PATH_LEN - 1)] == 'h' &&
			p[(i + 5) & (PATH_LEN - 1)] == '/';
	return search->found;
}

/* Where a path spelled with ".." reached that is worth a record even without a rule: a file under /etc or in an
 * SSH directory (a web application's path traversal reads these: /etc/passwd, a user's keys). */
static __always_inline bool traversal_target(char *path, u32 path_len)
{
	u64 head;
	__builtin_memcpy(&head, path, sizeof(head));
	if (path_len > 5 && (head & 0xFFFFFFFFFFULL) == 0x2f6374652fULL) /* "/etc/" */
		return true;
	struct ssh_search search = { .path = path, .path_len = path_len };
	bpf_loop(PATH_LEN, ssh_step, &search, 0);
	return search.found;
}

#define OPEN_TRAVERSAL 0x80000000U /* in an open record's flags (no open flag uses it): spelled with ".." */

/* Send the open record if a rule matches its path and it does not repeat a recent one. */
static __always_inline int emit_open(struct open_record *rec, u32 path_len, u32 flags, u32 mode)
{
	/* Already below PATH_LEN, which the compiler knows and the verifier does not always see: the mask stays. */
	asm volatile("" : "+r"(path_len));
	path_len &= PATH_LEN - 1;
	u32 type = match_rules(rec->path, path_len, flags);
	if (!type && (flags & OPEN_TRAVERSAL) && traversal_target(rec->path, path_len))
		type = is_write(flags) ? REC_FILE_WRITE : REC_OPEN;
	if (!type || is_repeat(rec, path_len, flags))
		return 0;
	fill_header(&rec->h, type);
	rec->flags = flags;
	rec->mode = mode;
	rec->path_len = path_len;
	u64 size = offsetof(struct open_record, path) + path_len;
	u64 waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size + 8;
	if (bpf_ringbuf_output(&events, rec, size, wakeup_flag(waiting, size + 8)))
		count_loss(size);
	else
		count_written(type);
	return 0;
}

static __always_inline int handle_open(const char *filename, u32 flags, u32 mode)
{
	if (is_self())
		return 0;
	/* The path lands 8-byte aligned (offset 72 in a map value), so prefixes compare a word at a time;
	 * bytes past its end are left from earlier paths, but no rule reads past a path's length. */
	struct open_scratch *scratch_value = bpf_map_lookup_elem(&scratch, &ZERO);
	if (!scratch_value)
		return 0;
	struct open_record *rec = &scratch_value->rec;
	long len = bpf_probe_read_user_str(rec->path, PATH_LEN, filename);
	if (len <= 1)
		return 0;
	u32 path_len = (len - 1) & (PATH_LEN - 1);
	u32 traversal = 0;
	if (needs_resolution(rec->path, path_len, &traversal)) {
		struct pending_open *pending = bpf_task_storage_get(&pending_opens, bpf_get_current_task_btf(), NULL,
								    BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (pending) {
			pending->flags = flags | (traversal ? OPEN_TRAVERSAL : 0);
			pending->mode = mode;
			pending->pending = 1;
		}
		return 0;
	}
	return emit_open(rec, path_len, flags, mode);
}

/* The file behind descriptor ``fd`` of the current task, or NULL. */
static __always_inline struct file *file_of_fd(int fd)
{
	struct fdtable *fdt = bpf_get_current_task_btf()->files->fdt;
	struct file *file = NULL;

	if (fd < 0 || fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* Joining walked names into a path, one name per bpf_loop step (the verifier checks one step). */
struct join {
	struct open_scratch *scratch;
	u32 depth;
	u32 at;
};

static long join_step(u64 index, void *data)
{
	struct join *j = data;
	u32 at = j->at;
	if (at >= PATH_LEN - 1)
		return 1;
	char *path = j->scratch->rec.path;
	u32 name = (j->depth - 1 - index) & (MAX_DEPTH - 1);
	/* ``at`` is below PATH_LEN, which the compiler knows and the verifier does not see: the masks stay. */
	asm volatile("" : "+r"(at));
	path[at & (PATH_LEN - 1)] = '/';
	at++;
	asm volatile("" : "+r"(at));
	long n = bpf_probe_read_kernel_str(&path[at & (PATH_LEN - 1)], NAME_LEN, j->scratch->names[name]);
	j->at = at + (n > 1 ? n - 1 : 0);
	return 0;
}

/* The walked names, leaf first, joined into the record's path from the root: its length. */
static __always_inline u32 join_names(struct open_scratch *scratch_value, u32 depth)
{
	struct join j = { .scratch = scratch_value, .depth = depth };
	if (!depth) { /* the root itself */
		scratch_value->rec.path[0] = '/';
		return 1;
	}
	bpf_loop(depth < MAX_DEPTH ? depth : MAX_DEPTH, join_step, &j, 0);
	return j.at < PATH_LEN - 1 ? j.at : PATH_LEN - 1;
}

/* At the exit of an open the entry deferred: the rules are matched on the opened file's path, walked from its
 * dentry up to the process's root as on_exec walks an executable's (an open that failed has no file). */
static __always_inline int resolve_open(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending_open *pending = bpf_task_storage_get(&pending_opens, task, NULL, 0);
	if (!pending || !pending->pending)
		return 0;
	pending->pending = 0;
	u32 flags = pending->flags, mode = pending->mode;
	struct file *file = file_of_fd(fd);
	struct open_scratch *scratch_value = bpf_map_lookup_elem(&scratch, &ZERO);
	if (!file || !scratch_value)
		return 0;
	struct fs_struct *fs = task->fs;
	u32 depth = walk_file(file, &fs->root, scratch_value->names);
	return emit_open(&scratch_value->rec, join_names(scratch_value, depth), flags, mode);
}

#define S_ISUID 04000
#define S_ISGID 02000

/* Whether a file change's path (read into an 8-byte aligned buffer with slack) is one a rule watches: an absolute
 * path as spelled, against every rule (as an open for writing would be). */
static __always_inline bool change_watched(char *path, long len)
{
	if (len <= 1)
		return false;
	u32 path_len = (len - 1) & (PATH_LEN - 1);
	u32 traversal;
	return !needs_resolution(path, path_len, &traversal) && match_rules(path, path_len, O_WRONLY);
}

#define AT_FDCWD -100

/* A relative name in ``rec.path`` made the path the kernel resolves it from: the directory it is relative to (the
 * working directory, or ``dirfd``'s), walked up to the process's root, then the name. Returns the new length plus
 * one, as bpf_probe_read_user_str counts. */
static __always_inline long under_directory(struct open_scratch *scratch_value, int dirfd)
{
	char *path = scratch_value->rec.path;
	bpf_probe_read_kernel_str(scratch_value->other, PATH_LEN, path);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	u32 depth = dirfd == AT_FDCWD ?
		walk_path(BPF_CORE_READ(fs, pwd.mnt), BPF_CORE_READ(fs, pwd.dentry), &fs->root, scratch_value->names) :
		walk_file(file_of_fd(dirfd), &fs->root, scratch_value->names);
	u32 at = join_names(scratch_value, depth);
	if (at > 1 && at < PATH_LEN - 1)
		path[at++ & (PATH_LEN - 1)] = '/';
	/* ``at`` is below PATH_LEN: the write ends in the names, which are joined already */
	asm volatile("" : "+r"(at));
	long n = bpf_probe_read_kernel_str(&path[at & (PATH_LEN - 1)], PATH_LEN, scratch_value->other);
	u32 len = at + (n > 1 ? n - 1 : 0);
	return (len < PATH_LEN - 1 ? len : PATH_LEN - 1) + 1;
}

/* The path of an open descriptor's file, made in ``rec.path`` (utimensat(fd, NULL, …): futimens). Returns the
 * length plus one, as bpf_probe_read_user_str counts; 0 for a descriptor that is not open. */
static __always_inline long path_of_fd(struct open_scratch *scratch_value, int fd)
{
	struct file *file = file_of_fd(fd);
	if (!file)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	return join_names(scratch_value, walk_file(file, &fs->root, scratch_value->names)) + 1;
}

static __always_inline int handle_file_change(u32 op, int dirfd, const char *path, const char *other, u32 mode,
					      s32 uid, s32 gid, s64 mtime)
{
	if (is_self())
		return 0;
	struct open_scratch *scratch_value = bpf_map_lookup_elem(&scratch, &ZERO);
	if (!scratch_value)
		return 0;
	char *first = scratch_value->rec.path, *second = scratch_value->other;
	long len = path ? bpf_probe_read_user_str(first, PATH_LEN, path) : path_of_fd(scratch_value, dirfd);
	if (path && len > 1 && first[0] != '/' && !other) /* a relative name (a rename's or link's two are matched as given) */
		len = under_directory(scratch_value, dirfd);
	long other_len = other ? bpf_probe_read_user_str(second, PATH_LEN, other) : 0;
	bool chmod = op == FILE_OP_CHMOD || op == FILE_OP_FCHMODAT;
	if (!(chmod && (mode & (S_ISUID | S_ISGID))) && !change_watched(first, len) && !change_watched(second, other_len))
		return 0;
	struct file_change_record *rec = reserve(sizeof(*rec), REC_FILE_CHANGE);
	if (!rec)
		return 0;
	rec->op = op;
	rec->mode = mode;
	rec->uid = uid;
	rec->gid = gid;
	rec->mtime = mtime;
	rec->path_len = len > 1 ? (len - 1) & (PATH_LEN - 1) : 0;
	rec->other_len = other_len > 1 ? (other_len - 1) & (PATH_LEN - 1) : 0;
	bpf_probe_read_kernel(rec->path, PATH_LEN, first);
	bpf_probe_read_kernel(rec->other, PATH_LEN, second);
	submit(rec, sizeof(*rec));
	return 0;
}

#define UTIME_NOW ((1L << 30) - 1)
#define UTIME_OMIT ((1L << 30) - 2)

/* Whether a time change sets explicit times (timestomping: ``touch -d``, ``touch -r``), and the modification
 * time it sets (-1: only the access time); times that are "now" (a NULL times, UTIME_NOW, UTIME_OMIT) are an
 * ordinary touch. utimes' and futimesat's timevals have a timespec's layout (microseconds for nanoseconds),
 * utime's utimbuf is two times alone (the 64-bit calls' layouts: a 32-bit process's compat times are read as
 * these). */
static __always_inline bool explicit_times(u32 op, void *times, s64 *mtime)
{
	s64 t[4];
	if (!times)
		return false;
	if (op == FILE_OP_UTIME) {
		if (bpf_probe_read_user(t, 2 * sizeof(s64), times))
			return false;
		*mtime = t[1];
		return true;
	}
	if (bpf_probe_read_user(t, sizeof(t), times))
		return false;
	bool atime = true, mtime_set = true;
	if (op == FILE_OP_UTIMENSAT) {
		atime = t[1] != UTIME_NOW && t[1] != UTIME_OMIT;
		mtime_set = t[3] != UTIME_NOW && t[3] != UTIME_OMIT;
	}
	*mtime = mtime_set ? t[2] : -1;
	return atime || mtime_set;
}

SEC("tracepoint/syscalls/sys_exit_open")
int on_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	return resolve_open(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int on_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return resolve_open(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int on_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return resolve_open(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int on_creat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return resolve_open(ctx->ret);
}


/* The socket behind descriptor ``fd`` of the current task, or NULL when it is not one. */
static __always_inline struct sock *socket_of_fd(int fd)
{
	struct file *file = file_of_fd(fd);
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

/* Both ends of a socket as the kernel has them (the remote end is zero before it connects). */
static __always_inline bool read_sock(struct sock_record *rec, struct sock *sk)
{
	u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	rec->family = family;
	rec->protocol = BPF_CORE_READ(sk, sk_protocol);
	rec->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	rec->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		bpf_core_read(rec->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(rec->remote_addr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(rec->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(rec->remote_addr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	return true;
}

static __always_inline struct sock_record *reserve_sock(u32 type, int fd)
{
	struct sock_record *rec = reserve(sizeof(*rec), type);
	if (!rec)
		return NULL;
	__builtin_memset(&rec->family, 0, sizeof(*rec) - sizeof(rec->h));
	rec->fd = fd;
	return rec;
}

/* The file names of container runtimes' API sockets: whoever connects to one can start a privileged container.
 * Only connects to these are recorded of all unix sockets (the detections' list names the same sockets). */
#define RUNTIME_SOCKETS 7
#define RUNTIME_SOCKET_LEN 16
static const char runtime_sockets[RUNTIME_SOCKETS][RUNTIME_SOCKET_LEN] = {
	"docker.sock", "containerd.sock", "crio.sock", "dockerd.sock", "podman.sock", "buildkitd.sock", "dockershim.sock",
};
static const u32 runtime_socket_lens[RUNTIME_SOCKETS] = { 11, 15, 9, 12, 11, 14, 15 };

static __always_inline bool ends_with(const char *path, u32 len, const char *suffix, u32 suffix_len)
{
	if (suffix_len > len)
		return false;
	u32 start = len - suffix_len;
	for (u32 i = 0; i < RUNTIME_SOCKET_LEN; i++) {
		if (i >= suffix_len)
			break;
		if (path[(start + i) & (UNIX_PATH_BUF - 1)] != suffix[i])
			return false;
	}
	return true;
}

static __always_inline int handle_unix_connect(int fd, void *addr)
{
	struct unix_connect_record *rec = reserve(sizeof(*rec), REC_UNIX_CONNECT);
	if (!rec)
		return 0;
	long len = bpf_probe_read_user_str(rec->path, UNIX_PATH_LEN + 1, addr + sizeof(u16));
	if (len > 1) {
		u32 path_len = (len - 1) & (UNIX_PATH_BUF - 1);
		for (u32 i = 0; i < RUNTIME_SOCKETS; i++) {
			if (ends_with(rec->path, path_len, runtime_sockets[i], runtime_socket_lens[i])) {
				rec->fd = fd;
				rec->path_len = path_len;
				submit(rec, sizeof(*rec));
				return 0;
			}
		}
	}
	bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP); /* abstract sockets (a leading zero byte) included */
	return 0;
}

/* A socket connecting while it is descriptor 0, 1 or 2 (made after those were closed) ends up where a dup of a
 * connected socket would: the stdio record is the connect's own. */
static __always_inline void emit_stdio_connect(struct sock_record *connect)
{
	struct dup_record *rec = reserve(sizeof(*rec), REC_STDIO_DUP);
	if (!rec)
		return;
	__builtin_memcpy(&rec->sock.family, &connect->family, sizeof(*connect) - sizeof(connect->h));
	rec->call = 5;
	rec->new_fd = connect->fd;
	submit(rec, sizeof(*rec));
}

/* The remote end a connect or send names, from the caller's sockaddr. */
static __always_inline void read_remote(struct sock_record *rec, u16 family, void *addr)
{
	rec->family = family;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};
		bpf_probe_read_user(&sin, sizeof(sin), addr);
		rec->remote_port = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(rec->remote_addr, &sin.sin_addr, 4);
	} else {
		struct sockaddr_in6 sin6 = {};
		bpf_probe_read_user(&sin6, sizeof(sin6), addr);
		rec->remote_port = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(rec->remote_addr, &sin6.sin6_addr, 16);
	}
}

static __always_inline int handle_connect(int fd, void *addr)
{
	u16 family = 0;

	bpf_probe_read_user(&family, sizeof(family), addr);
	if (family == AF_UNIX && !is_self())
		return handle_unix_connect(fd, addr);
	if ((family != AF_INET && family != AF_INET6) || is_self())
		return 0;
	struct sock_record *rec = reserve_sock(REC_CONNECT, fd);
	if (!rec)
		return 0;
	struct sock *sk = socket_of_fd(fd);
	if (sk) {
		rec->protocol = BPF_CORE_READ(sk, sk_protocol);
		rec->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	}
	read_remote(rec, family, addr);
	if (fd >= 0 && fd <= 2)
		emit_stdio_connect(rec);
	submit(rec, sizeof(*rec));
	return 0;
}

#define IPPROTO_UDP 17
#define SEND_SENDTO 1 /* sock_record.pad of a connect record that is a datagram sent to an address */

/* A UDP datagram sent to an address on a socket that need not be connected: recorded as a connect to it (call
 * 1 sendto, 2 sendmsg, 3 sendmmsg in ``pad``), once per process and destination port. The common case, a send
 * without an address, returns at the first test. */
static __always_inline int handle_send(u32 call, int fd, void *addr)
{
	u16 head[2] = {}; /* sa_family and, in both inet families, the port */

	if (!addr || bpf_probe_read_user(head, sizeof(head), addr) || (head[0] != AF_INET && head[0] != AF_INET6))
		return 0;
	struct process_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.pad = (u32)head[0] << 16 | head[1],
		.start_ns = bpf_get_current_task_btf()->group_leader->start_time,
	};
	if (bpf_map_lookup_elem(&udp_destinations, &key) || is_self())
		return 0;
	struct sock *sk = socket_of_fd(fd);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
		return 0;
	static const u8 seen = 1;
	bpf_map_update_elem(&udp_destinations, &key, &seen, BPF_ANY);
	struct sock_record *rec = reserve_sock(REC_CONNECT, fd);
	if (!rec)
		return 0;
	rec->protocol = IPPROTO_UDP;
	rec->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	read_remote(rec, head[0], addr);
	rec->pad = SEND_SENDTO + call;
	submit(rec, sizeof(*rec));
	return 0;
}

/* The address a sendmsg (or sendmmsg's first message) sends to: msg_name, the first field of the header. */
static __always_inline void *message_name(void *msg)
{
	void *name = NULL;
	bpf_probe_read_user(&name, sizeof(name), msg);
	return name;
}

/* A record of the socket's own addresses (accept, listen): sent only when they could be read. */
static __always_inline int emit_sock(u32 type, int fd, struct sock *sk)
{
	struct sock_record *rec = reserve_sock(type, fd);
	if (!rec)
		return 0;
	if (read_sock(rec, sk))
		submit(rec, sizeof(*rec));
	else
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
	return 0;
}

static __always_inline int handle_accept(long ret)
{
	if (ret < 0 || is_self())
		return 0;
	struct sock *sk = socket_of_fd(ret);
	if (!sk)
		return 0;
	return emit_sock(REC_ACCEPT, ret, sk);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept(struct trace_event_raw_sys_exit *ctx)
{
	return handle_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return handle_accept(ctx->ret);
}

static __always_inline int handle_listen(int fd)
{
	if (is_self())
		return 0;
	struct sock *sk = socket_of_fd(fd);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) == 1 /* AF_UNIX */)
		return 0;
	return emit_sock(REC_LISTEN, fd, sk);
}

/* A packet socket of any type (it sees and forges the node's or pod's frames: sniffing, ARP spoofing), or a raw
 * IPv4/IPv6 socket. Raw netlink sockets are how programs ask the kernel about interfaces and routes (glibc's
 * getaddrinfo among them): they are not recorded. */
static __always_inline int handle_socket(u32 family, u32 type, u32 protocol)
{
	u32 kind = type & SOCK_TYPE_MASK;
	if (family != AF_PACKET && !(kind == SOCK_RAW && (family == AF_INET || family == AF_INET6)))
		return 0;
	if (is_self())
		return 0;
	struct socket_record *rec = reserve(sizeof(*rec), REC_SOCKET);
	if (!rec)
		return 0;
	rec->family = family;
	rec->type = kind;
	rec->protocol = protocol;
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

/* An inet socket (the descriptor ``sock_fd``) landing on descriptor 0, 1 or 2: a shell's input and output
 * become a network connection, the reverse shell's signature. */
static __always_inline int emit_dup(u32 call, int old_fd, int new_fd)
{
	if (new_fd < 0 || new_fd > 2 || is_self())
		return 0;
	struct sock *sk = socket_of_fd(old_fd);
	if (!sk)
		return 0;
	struct dup_record *rec = reserve(sizeof(*rec), REC_STDIO_DUP);
	if (!rec)
		return 0;
	__builtin_memset(&rec->sock.family, 0, sizeof(rec->sock) - sizeof(rec->sock.h));
	rec->sock.fd = old_fd;
	rec->call = call;
	rec->new_fd = new_fd;
	if (read_sock(&rec->sock, sk))
		submit(rec, sizeof(*rec));
	else
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Where dup(2) or fcntl(F_DUPFD) from ``from`` on will put the copy when that is 0, 1 or 2 (the lowest descriptor
 * not open), else -1: known at entry from the table's bitmap of open descriptors. */
static __always_inline int next_stdio_fd(u32 from)
{
	unsigned long *open_fds = bpf_get_current_task_btf()->files->fdt->open_fds;
	unsigned long word = ~0UL;

	bpf_probe_read_kernel(&word, sizeof(word), open_fds);
	for (u32 fd = 0; fd < 3; fd++) {
		if (fd >= from && !(word & (1UL << fd)))
			return fd;
	}
	return -1;
}

#define F_DUPFD 0
#define F_DUPFD_CLOEXEC 1030

static __always_inline int handle_userfaultfd(u32 flags)
{
	if ((u32)bpf_get_current_uid_gid() == 0 || is_self())
		return 0;
	struct userfaultfd_record *rec = reserve(sizeof(*rec), REC_USERFAULTFD);
	if (!rec)
		return 0;
	rec->flags = flags;
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_vm_write(u32 target_pid, u32 iovecs)
{
	if (target_pid == (u32)(bpf_get_current_pid_tgid() >> 32) || is_self())
		return 0;
	struct vm_write_record *rec = reserve(sizeof(*rec), REC_VM_WRITE);
	if (!rec)
		return 0;
	rec->target_pid = target_pid;
	rec->iovecs = iovecs;
	submit(rec, sizeof(*rec));
	return 0;
}

#define PROT_WRITE 2
#define PROT_EXEC 4

static __always_inline int handle_wx_memory(u32 call, u64 len, u32 prot, u32 flags)
{
	if ((prot & (PROT_WRITE | PROT_EXEC)) != (PROT_WRITE | PROT_EXEC) || is_self())
		return 0;
	struct process_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.start_ns = bpf_get_current_task_btf()->group_leader->start_time,
	};
	static const u8 seen = 1;
	if (bpf_map_update_elem(&wx_processes, &key, &seen, BPF_NOEXIST))
		return 0; /* recorded for this process already */
	struct wx_record *rec = reserve(sizeof(*rec), REC_WX_MEMORY);
	if (!rec)
		return 0;
	rec->call = call;
	rec->prot = prot;
	rec->len = len;
	rec->flags = flags;
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_ptrace(long request, u32 target_pid)
{
	/* ATTACH, SEIZE, the POKEs and the register writes (SETREGS 13, SETFPREGS 15, SETREGSET 0x4205: pointing
	 * the instruction pointer at injected code) let one process control another; the rest is a debugger's
	 * routine. */
	if (request != 16 && request != 0x4206 && request != 13 && request != 15 && request != 0x4205 &&
	    (request < 4 || request > 6))
		return 0;
	if (is_self())
		return 0;
	struct ptrace_record *rec = reserve(sizeof(*rec), REC_PTRACE);
	if (!rec)
		return 0;
	rec->request = request;
	rec->target_pid = target_pid;
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_setid(u32 call, s32 id0, s32 id1, s32 id2)
{
	if (is_self())
		return 0;
	struct setid_record *rec = reserve(sizeof(*rec), REC_SETID);
	if (!rec)
		return 0;
	rec->call = call;
	rec->ids[0] = id0;
	rec->ids[1] = id1;
	rec->ids[2] = id2;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_ns(u32 setns, u32 flags, int fd)
{
	if (is_self())
		return 0;
	struct ns_record *rec = reserve(sizeof(*rec), REC_NS_CHANGE);
	if (!rec)
		return 0;
	rec->setns = setns;
	rec->flags = flags;
	rec->fd = fd;
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_mount(void *source, void *target, void *fstype, u64 flags)
{
	if (is_self())
		return 0;
	struct mount_record *rec = reserve(sizeof(*rec), REC_MOUNT);
	if (!rec)
		return 0;
	rec->flags = flags;
	rec->source[0] = rec->target[0] = rec->fstype[0] = 0;
	bpf_probe_read_user_str(rec->source, sizeof(rec->source), source);
	bpf_probe_read_user_str(rec->target, sizeof(rec->target), target);
	bpf_probe_read_user_str(rec->fstype, sizeof(rec->fstype), fstype);
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_module(u32 from_fd, int fd, const char *args, u32 flags)
{
	if (is_self())
		return 0;
	struct module_record *rec = reserve(sizeof(*rec), REC_MODULE);
	if (!rec)
		return 0;
	rec->from_fd = from_fd;
	rec->flags = flags;
	rec->fd = fd;
	rec->pad = 0;
	rec->name[0] = rec->args[0] = 0;
	bpf_probe_read_user_str(rec->args, sizeof(rec->args), args);
	if (from_fd) {
		struct file *file = file_of_fd(fd);
		if (file)
			bpf_probe_read_kernel_str(rec->name, sizeof(rec->name),
						  BPF_CORE_READ(file, f_path.dentry, d_name.name));
	}
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_bpf(u32 cmd, union bpf_attr *attr)
{
	/* Program loads and attachments; map and object housekeeping is not security-relevant. */
	if ((cmd != BPF_PROG_LOAD && cmd != BPF_PROG_ATTACH && cmd != BPF_RAW_TRACEPOINT_OPEN &&
	     cmd != BPF_LINK_CREATE) || is_self())
		return 0;
	struct bpf_record *rec = reserve(sizeof(*rec), REC_BPF);
	if (!rec)
		return 0;
	rec->cmd = cmd;
	rec->prog_type = 0;
	rec->prog_name[0] = 0;
	if (cmd == BPF_PROG_LOAD) {
		bpf_probe_read_user(&rec->prog_type, sizeof(rec->prog_type), &attr->prog_type);
		bpf_probe_read_user_str(rec->prog_name, sizeof(rec->prog_name), &attr->prog_name);
	}
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_memfd_create(void *name, u32 flags)
{
	if (is_self())
		return 0;
	struct memfd_record *rec = reserve(sizeof(*rec), REC_MEMFD);
	if (!rec)
		return 0;
	rec->flags = flags;
	rec->pad = 0;
	rec->name[0] = 0;
	bpf_probe_read_user_str(rec->name, sizeof(rec->name), name);
	submit(rec, sizeof(*rec));
	return 0;
}


/* Whether the current task makes 32-bit syscalls on a 64-bit kernel (their numbers are another table's). */
static __always_inline bool in_compat_syscall(struct task_struct *task)
{
#if defined(__TARGET_ARCH_x86)
	return task->thread_info.status & 0x0002; /* TS_COMPAT */
#elif defined(__TARGET_ARCH_arm64)
	return task->thread_info.flags & (1UL << 22); /* TIF_32BIT */
#else
	return false;
#endif
}

/* runc's init process names itself "runc:[0:PARENT]", "runc:[1:CHILD]", then "runc:[2:INIT]" and, from inside the
 * container's cgroup, sets the container up (mount, pivot_root, sethostname, keyctl, seccomp, ...) until it
 * executes the workload, whose name the task takes then. Those calls are runc's, not the workload's: a profile
 * learned with them would allow them all. One masked load of the name's first 8 bytes tells them apart. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RUNC_INIT_PREFIX 0x00005b3a636e7572ULL /* "runc:[" */
#define RUNC_INIT_PREFIX_MASK 0x0000ffffffffffffULL
#else
#define RUNC_INIT_PREFIX 0x72756e633a5b0000ULL
#define RUNC_INIT_PREFIX_MASK 0xffffffffffff0000ULL
#endif

static __always_inline bool is_runc_init(struct task_struct *task)
{
	return (*(u64 *)task->comm & RUNC_INIT_PREFIX_MASK) == RUNC_INIT_PREFIX;
}

/* Add a CPU's slot into its cgroup's entry of ``cgroup_syscalls`` and empty it. When the table is full, the
 * slot's syscalls are counted in ``unprofiled`` instead. */
static __always_inline void merge_profile(struct profile_slot *slot)
{
	u64 cgroup_id = slot->cgroup_id;
	struct cgroup_syscalls *seen = bpf_map_lookup_elem(&cgroup_syscalls, &cgroup_id);
	if (!seen) {
		static const struct cgroup_syscalls fresh;
		bpf_map_update_elem(&cgroup_syscalls, &cgroup_id, &fresh, BPF_NOEXIST);
		seen = bpf_map_lookup_elem(&cgroup_syscalls, &cgroup_id);
	}
	if (seen) {
		for (int i = 0; i < SYSCALL_SLOTS / 64; i++)
			seen->used[i] |= slot->syscalls.used[i];
		for (int i = 0; i < CLASS_SLOTS; i++) {
			seen->counts[0][i] += slot->syscalls.counts[0][i];
			seen->counts[1][i] += slot->syscalls.counts[1][i];
		}
	} else {
		u64 *missed = bpf_map_lookup_elem(&unprofiled, &ZERO);
		if (missed)
			*missed += slot->syscalls.counts[0][CLASS_OTHER] + slot->syscalls.counts[1][CLASS_OTHER];
	}
	__builtin_memset(&slot->syscalls, 0, sizeof(slot->syscalls));
}

/* Set the syscall's bit in its cgroup's profile and count it, in this CPU's slot (see ``profile_slots``). */
static __always_inline void profile(struct task_struct *task, u32 slot_index, u32 compat, u32 class)
{
	u64 cgroup_id = current_cgroup_id(task);
	struct profile_slot *slot = bpf_map_lookup_elem(&profile_slots, &ZERO);
	if (!slot)
		return;
	if (slot->cgroup_id != cgroup_id) {
		if (slot->cgroup_id)
			merge_profile(slot);
		slot->cgroup_id = cgroup_id;
	}
	slot->syscalls.used[(slot_index / 64) & (SYSCALL_SLOTS / 64 - 1)] |= 1ULL << (slot_index % 64);
	u64 *counts = slot->syscalls.counts[compat & 1];
	counts[CLASS_OTHER]++;
	if (class)
		counts[class & (CLASS_SLOTS - 1)]++;
}

/* The syscall's arguments, loaded from its registers through the tracepoint's BTF pointer (a load each, where
 * the _CORE_ forms call bpf_probe_read_kernel for each). */
#define ARG1 PT_REGS_PARM1_SYSCALL(regs)
#define ARG2 PT_REGS_PARM2_SYSCALL(regs)
#define ARG3 PT_REGS_PARM3_SYSCALL(regs)
#define ARG4 PT_REGS_PARM4_SYSCALL(regs)
#define ARG5 PT_REGS_PARM5_SYSCALL(regs)

/* The record of a syscall the sensor watches, from its arguments at entry. */
static __always_inline int handle(struct pt_regs *regs, u32 handler, u32 variant)
{
	switch (handler) {
	case HANDLE_OPEN:
		return handle_open((const char *)ARG1, ARG2, ARG3);
	case HANDLE_OPENAT:
		return handle_open((const char *)ARG2, ARG3, ARG4);
	case HANDLE_CREAT:
		return handle_open((const char *)ARG1, O_CREAT | O_WRONLY | O_TRUNC, ARG2);
	case HANDLE_OPENAT2: {
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)ARG3);
		return handle_open((const char *)ARG2, how.flags, how.mode);
	}
	case HANDLE_CONNECT:
		return handle_connect(ARG1, (void *)ARG2);
	case HANDLE_SEND: /* sendto(fd, buf, len, flags, addr, addrlen), sendmsg(fd, msg, ..), sendmmsg(fd, msgs, ..) */
		return handle_send(variant, ARG1, variant == 0 ? (void *)ARG5 : message_name((void *)ARG2));
	case HANDLE_LISTEN:
		return handle_listen(ARG1);
	case HANDLE_PTRACE:
		return handle_ptrace(ARG1, ARG2);
	case HANDLE_SETID: {
		/* setuid/setgid/setfs*: one id; setre*: two; setres*: three */
		u32 ids = variant == SET_RESUID || variant == SET_RESGID ? 3 :
			  variant == SET_REUID || variant == SET_REGID ? 2 : 1;
		return handle_setid(variant, ARG1, ids > 1 ? (s32)ARG2 : -1, ids > 2 ? (s32)ARG3 : -1);
	}
	case HANDLE_UNSHARE:
		return handle_ns(0, ARG1, -1);
	case HANDLE_SETNS:
		return handle_ns(1, ARG2, ARG1);
	case HANDLE_MOUNT:
		return handle_mount((void *)ARG1, (void *)ARG2, (void *)ARG3, ARG4);
	case HANDLE_INIT_MODULE:
		return handle_module(0, -1, (const char *)ARG3, 0);
	case HANDLE_FINIT_MODULE:
		return handle_module(1, ARG1, (const char *)ARG2, ARG3);
	case HANDLE_BPF:
		return handle_bpf(ARG1, (union bpf_attr *)ARG2);
	case HANDLE_MEMFD_CREATE:
		return handle_memfd_create((void *)ARG1, ARG2);
	case HANDLE_SOCKET:
		return handle_socket(ARG1, ARG2, ARG3);
	case HANDLE_DUP:
		return emit_dup(0, ARG1, next_stdio_fd(0));
	case HANDLE_DUP2:
		return emit_dup(2, ARG1, ARG2);
	case HANDLE_DUP3:
		return emit_dup(3, ARG1, ARG2);
	case HANDLE_WX_MEMORY: /* mprotect(addr, len, prot), pkey_mprotect(.., pkey), mmap(addr, len, prot, flags, ..) */
		return handle_wx_memory(variant, ARG2, ARG3, variant == 2 ? ARG4 : 0);
	case HANDLE_FILE_CHANGE: { /* the arguments per call, then one handler: one copy for the verifier to check */
		int dirfd = AT_FDCWD;
		const char *path = (const char *)ARG1, *other = NULL;
		u32 mode = 0;
		s32 uid = -1, gid = -1;
		s64 mtime = 0;
		switch (variant) {
		case FILE_OP_UNLINK:
		case FILE_OP_RMDIR:
			break;
		case FILE_OP_RENAME:
		case FILE_OP_LINK:
		case FILE_OP_SYMLINK:
			other = (const char *)ARG2;
			break;
		case FILE_OP_SYMLINKAT:
			other = (const char *)ARG3;
			break;
		case FILE_OP_MKDIR:
		case FILE_OP_CHMOD:
			mode = ARG2;
			break;
		case FILE_OP_CHOWN:
		case FILE_OP_LCHOWN:
			uid = ARG2;
			gid = ARG3;
			break;
		case FILE_OP_UTIMES:
		case FILE_OP_UTIME:
			if (!explicit_times(variant, (void *)ARG2, &mtime))
				return 0;
			break;
		default: /* the *at calls: a directory descriptor first */
			dirfd = ARG1;
			path = (const char *)ARG2;
			switch (variant) {
			case FILE_OP_UNLINKAT:
			case FILE_OP_MKDIRAT:
			case FILE_OP_FCHMODAT:
				mode = ARG3;
				break;
			case FILE_OP_RENAMEAT:
			case FILE_OP_RENAMEAT2:
			case FILE_OP_LINKAT:
				other = (const char *)ARG4;
				break;
			case FILE_OP_FCHOWNAT:
				uid = ARG3;
				gid = ARG4;
				break;
			case FILE_OP_UTIMENSAT:
			case FILE_OP_FUTIMESAT:
				if (!explicit_times(variant, (void *)ARG3, &mtime))
					return 0;
				break;
			default:
				return 0;
			}
		}
		return handle_file_change(variant, dirfd, path, other, mode, uid, gid, mtime);
	}
	case HANDLE_FCNTL:
		if ((ARG2 != F_DUPFD && ARG2 != F_DUPFD_CLOEXEC) || ARG3 > 2)
			return 0;
		return emit_dup(4, ARG1, next_stdio_fd(ARG3));
	case HANDLE_USERFAULTFD:
		return handle_userfaultfd(ARG1);
	case HANDLE_PROCESS_VM_WRITEV:
		return handle_vm_write(ARG1, ARG5);
	}
	return 0;
}

/* Every syscall of every task enters here, once: its cgroup's profile is updated (unless runc's init makes it)
 * and, for the syscalls the sensor records, the record is made. A raw BTF tracepoint hands the program the syscall's registers as they
 * are; classic syscall tracepoints would first copy them into a trace record for each program attached. */
SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id)
{
	if ((u64)id >= COMPAT_BASE)
		return 0;
	u32 slot = id;
	struct task_struct *task = bpf_get_current_task_btf();
	u32 compat = in_compat_syscall(task);
	if (compat)
		slot += COMPAT_BASE;
	u32 *entry = bpf_map_lookup_elem(&syscall_table, &slot);
	u32 what = entry ? *entry : 0;
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	if (cfg && cfg->profiles && !is_runc_init(task))
		profile(task, slot, compat, what & 0xff);
	if (!compat && what >> 8)
		return handle(regs, (what >> 8) & 0xff, (what >> 16) & 0xff);
	return 0;
}

static __always_inline int cgroup_dir(u32 type, u64 id, const char *path)
{
	struct cgroup_dir_record *rec = reserve(sizeof(*rec), type);
	if (!rec)
		return 0;
	rec->id = id;
	if (bpf_probe_read_kernel_str(rec->path, sizeof(rec->path), path) < 0)
		rec->path[0] = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(on_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0) /* a cgroup v1 hierarchy: its ids are another space */
		return 0;
	return cgroup_dir(REC_CGROUP_MKDIR, BPF_CORE_READ(cgrp, kn, id), path);
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(on_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return 0;
	/* Sent for every removed cgroup: its syscalls may still be in a CPU's slot rather than in the table. */
	return cgroup_dir(REC_CGROUP_RMDIR, BPF_CORE_READ(cgrp, kn, id), path);
}

#define SIGSYS 31
#define SYS_SECCOMP 1
#define SECCOMP_MODE_DEAD 3 /* set before a KILL verdict's signal (kernel/seccomp.c) */

SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
	     int result)
{
	if (sig != SIGSYS || (unsigned long)info <= 1 /* SEND_SIG_NOINFO, SEND_SIG_PRIV */)
		return 0;
	if (BPF_CORE_READ(info, si_code) != SYS_SECCOMP)
		return 0;
	struct seccomp_record *rec = reserve(sizeof(*rec), REC_SECCOMP);
	if (!rec)
		return 0;
	rec->syscall = BPF_CORE_READ(info, _sifields._sigsys._syscall);
	rec->arch = BPF_CORE_READ(info, _sifields._sigsys._arch);
	rec->data = BPF_CORE_READ(info, si_errno);
	rec->killed = BPF_CORE_READ(task, seccomp.mode) == SECCOMP_MODE_DEAD;
	submit(rec, sizeof(*rec));
	return 0;
}
