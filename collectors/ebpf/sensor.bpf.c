// SPDX-License-Identifier: GPL-2.0
//
// vigil's syscall sensor: a CO-RE program built against the running kernel's BTF (vmlinux.h from bpftool).
//
// Only tracepoints, raw tracepoints and tp_btf are used: kprobes, fentry and BPF-LSM are unavailable on the
// kernels vigil targets. Every syscall enters one program (on_sys_enter), which adds it to its cgroup's syscall
// profile (unless runc's init makes it: see is_runc_init) and hands the syscalls the sensor records to their
// handler, chosen through a table user space fills for the node's architecture. Everything that can be
// decided in the kernel is decided here, so user space sees only records worth keeping: file opens are matched
// against the configured rules (prefix and/or suffix) before a record is written and a process's repeats of
// one open are counted rather than recorded, ptrace keeps only the requests that let one process control
// another, and the sensor's own process is ignored.
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
#define WALK_STEPS 24 /* path components plus mount crossings */
#define MAX_RULES 16
#define PREFIX_WORDS 8
#define SUFFIX_LEN 32

#define AF_INET 2
#define AF_INET6 10
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
	char args[ARGS_LEN];
	char exe[MAX_DEPTH][NAME_LEN];
	char cwd[MAX_DEPTH][NAME_LEN];
	char parent_exe[MAX_DEPTH][NAME_LEN];
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

/* A cgroup v2 directory was removed: user space reports what its processes did without waiting for the
 * next flush (the header's cgroup is the remover's, ``removed_id`` the removed one's). */
struct cgroup_rmdir_record {
	struct header h;
	u64 removed_id;
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
	HANDLE_FINIT_MODULE, HANDLE_BPF, HANDLE_MEMFD_CREATE,
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

struct sensor_config {
	u32 rule_count;
	u32 self_tgid;
	u64 wakeup_bytes;
	u64 repeat_window_ns;
	u32 profiles; /* aggregate per-cgroup syscall profiles */
	u32 unanchored; /* rules without a prefix: bit 0 some apply to every open, bit 1 some to opens for writing */
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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sensor_config);
} sensor_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct open_record); /* built here, sent only when a rule matches */
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct open_key);
	__type(value, struct open_seen);
} recent_opens SEC(".maps");

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

static __always_inline void fill_header(struct header *h, u32 type)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u64 uid_gid = bpf_get_current_uid_gid();

	h->time_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->type = type;
	h->pid = pid_tgid >> 32;
	h->tid = (u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
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
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root) || dentry == parent) {
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
	rec->exe_depth = walk_file(BPF_CORE_READ(bprm, file), root, rec->exe);
	rec->cwd_depth = walk_path(BPF_CORE_READ(fs, pwd.mnt), BPF_CORE_READ(fs, pwd.dentry), root, rec->cwd);
	rec->parent_exe_depth = walk_file(BPF_CORE_READ(task, real_parent, mm, exe_file), root, rec->parent_exe);
	rec->euid = BPF_CORE_READ(task, cred, euid.val);
	rec->egid = BPF_CORE_READ(task, cred, egid.val);
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

/* REC_FILE_WRITE or REC_OPEN for the first rule the path matches, 0 when none does. */
static __always_inline u32 match_rules(struct open_record *rec, u32 path_len, u32 flags)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	if (!cfg)
		return 0;
	bool writes = is_write(flags);

	for (u32 r = 0; r < MAX_RULES; r++) {
		if (r >= cfg->rule_count)
			break;
		struct open_rule *rule = bpf_map_lookup_elem(&open_rules, &r);
		if (!rule || (rule->write_only && !writes))
			continue;
		if (prefix_matches(rule, (u64 *)rec->path, path_len) && suffix_matches(rule, rec->path, path_len))
			return rule->write_only ? REC_FILE_WRITE : REC_OPEN;
	}
	return 0;
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

/* Whether a rule may match the path, judged from its first 8 bytes against the rules' first prefix words: most
 * opens are of paths no rule starts like, and reading those 8 bytes costs a fraction of reading the path. */
static __always_inline bool may_match(const char *filename, u32 flags)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	if (!cfg)
		return false;
	bool writes = is_write(flags);
	if (cfg->unanchored & (writes ? 3 : 1))
		return true;
	u64 head;
	if (bpf_probe_read_user(&head, sizeof(head), filename))
		return true; /* a path of under 8 bytes at the end of a page: the full check decides */
	for (u32 r = 0; r < MAX_RULES; r++) {
		if (r >= cfg->rule_count)
			break;
		struct open_rule *rule = bpf_map_lookup_elem(&open_rules, &r);
		if (rule && (writes || !rule->write_only) && !((head ^ rule->prefix[0]) & rule->mask[0]))
			return true;
	}
	return false;
}

static __always_inline int handle_open(const char *filename, u32 flags, u32 mode)
{
	if (!may_match(filename, flags) || is_self())
		return 0;
	/* The path lands 8-byte aligned (offset 72 in a map value), so prefixes compare a word at a time;
	 * bytes past its end are left from earlier paths, but no rule reads past a path's length. */
	struct open_record *rec = bpf_map_lookup_elem(&scratch, &ZERO);
	if (!rec)
		return 0;
	long len = bpf_probe_read_user_str(rec->path, PATH_LEN, filename);
	if (len <= 1)
		return 0;
	u32 path_len = (len - 1) & (PATH_LEN - 1);
	u32 type = match_rules(rec, path_len, flags);
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


/* The socket behind descriptor ``fd`` of the current task, or NULL when it is not one. */
static __always_inline struct sock *socket_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file *file = NULL;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
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

static __always_inline int handle_connect(int fd, void *addr)
{
	u16 family = 0;

	bpf_probe_read_user(&family, sizeof(family), addr);
	if ((family != AF_INET && family != AF_INET6) || is_self())
		return 0;
	struct sock_record *rec = reserve_sock(REC_CONNECT, fd);
	if (!rec)
		return 0;
	rec->family = family;
	struct sock *sk = socket_of_fd(fd);
	if (sk) {
		rec->protocol = BPF_CORE_READ(sk, sk_protocol);
		rec->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	}
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
	submit(rec, sizeof(*rec));
	return 0;
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

static __always_inline int handle_ptrace(long request, u32 target_pid)
{
	/* ATTACH, SEIZE and the POKEs let one process control another; the rest is a debugger's routine. */
	if (request != 16 && request != 0x4206 && (request < 4 || request > 6))
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
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
		struct file *file = NULL;
		if (fd >= 0 && fd < BPF_CORE_READ(fdt, max_fds)) {
			struct file **fds = BPF_CORE_READ(fdt, fd);
			bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
		}
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

/* Set the syscall's bit in its cgroup's entry (a write only the first time) and count it. */
static __always_inline void profile(u32 slot, u32 compat, u32 class)
{
	u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cgroup_syscalls *seen = bpf_map_lookup_elem(&cgroup_syscalls, &cgroup_id);
	if (!seen) {
		static const struct cgroup_syscalls fresh;
		bpf_map_update_elem(&cgroup_syscalls, &cgroup_id, &fresh, BPF_NOEXIST);
		seen = bpf_map_lookup_elem(&cgroup_syscalls, &cgroup_id);
		if (!seen) {
			u64 *missed = bpf_map_lookup_elem(&unprofiled, &ZERO);
			if (missed)
				(*missed)++;
			return;
		}
	}
	u64 *word = &seen->used[(slot / 64) & (SYSCALL_SLOTS / 64 - 1)];
	u64 bit = 1ULL << (slot % 64);
	if (!(*word & bit))
		*word |= bit;
	u64 *counts = seen->counts[compat & 1];
	counts[CLASS_OTHER]++;
	if (class)
		counts[class & (CLASS_SLOTS - 1)]++;
}

#define ARG1 PT_REGS_PARM1_CORE_SYSCALL(regs)
#define ARG2 PT_REGS_PARM2_CORE_SYSCALL(regs)
#define ARG3 PT_REGS_PARM3_CORE_SYSCALL(regs)
#define ARG4 PT_REGS_PARM4_CORE_SYSCALL(regs)

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
		profile(slot, compat, what & 0xff);
	if (!compat && what >> 8)
		return handle(regs, (what >> 8) & 0xff, (what >> 16) & 0xff);
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(on_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0) /* a cgroup v1 hierarchy: its ids are another space */
		return 0;
	u64 removed_id = BPF_CORE_READ(cgrp, kn, id);
	if (!bpf_map_lookup_elem(&cgroup_syscalls, &removed_id))
		return 0;
	struct cgroup_rmdir_record *rec = reserve(sizeof(*rec), REC_CGROUP_RMDIR);
	if (!rec)
		return 0;
	rec->removed_id = removed_id;
	if (bpf_probe_read_kernel_str(rec->path, sizeof(rec->path), path) < 0)
		rec->path[0] = 0;
	submit(rec, sizeof(*rec));
	return 0;
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
