// SPDX-License-Identifier: GPL-2.0
//
// vigil's syscall sensor: a CO-RE program built against the running kernel's BTF (vmlinux.h from bpftool).
//
// Only tracepoints, raw tracepoints and tp_btf are used: kprobes, fentry and BPF-LSM are unavailable on the
// kernels vigil targets. Everything that can be decided in the kernel is decided here, so user space sees
// only records worth keeping: file opens are matched against the configured rules (prefix and/or suffix)
// before a record is written and a process's repeats of one open are counted rather than recorded, ptrace
// keeps only the requests that let one process control another, and the sensor's own process is ignored.
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

/* Records written, by record type, in one value so that user space reads them all in one lookup (the
 * metric of records captured then costs user space nothing per record). */
#define TYPE_SLOTS 16
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

/* REC_FILE_WRITE or REC_OPEN for the first rule the path matches, 0 when none does. */
static __always_inline u32 match_rules(struct open_record *rec, u32 path_len, u32 flags)
{
	struct sensor_config *cfg = bpf_map_lookup_elem(&sensor_config, &ZERO);
	if (!cfg)
		return 0;
	bool writes = (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR || (flags & (O_CREAT | O_TRUNC));

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

static __always_inline int handle_open(const char *filename, u32 flags, u32 mode)
{
	if (is_self())
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

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct trace_event_raw_sys_enter *ctx)
{
	return handle_open((const char *)ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_open")
int on_open(struct trace_event_raw_sys_enter *ctx)
{
	return handle_open((const char *)ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int on_creat(struct trace_event_raw_sys_enter *ctx)
{
	return handle_open((const char *)ctx->args[0], O_CREAT | O_WRONLY | O_TRUNC, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int on_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};
	bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]);
	return handle_open((const char *)ctx->args[1], how.flags, how.mode);
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

SEC("tracepoint/syscalls/sys_enter_connect")
int on_connect(struct trace_event_raw_sys_enter *ctx)
{
	u16 family = 0;
	void *addr = (void *)ctx->args[1];

	bpf_probe_read_user(&family, sizeof(family), addr);
	if ((family != AF_INET && family != AF_INET6) || is_self())
		return 0;
	int fd = ctx->args[0];
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

SEC("tracepoint/syscalls/sys_enter_listen")
int on_listen(struct trace_event_raw_sys_enter *ctx)
{
	int fd = ctx->args[0];
	if (is_self())
		return 0;
	struct sock *sk = socket_of_fd(fd);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) == 1 /* AF_UNIX */)
		return 0;
	return emit_sock(REC_LISTEN, fd, sk);
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int on_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	long request = ctx->args[0];
	/* ATTACH, SEIZE and the POKEs let one process control another; the rest is a debugger's routine. */
	if (request != 16 && request != 0x4206 && (request < 4 || request > 6))
		return 0;
	if (is_self())
		return 0;
	struct ptrace_record *rec = reserve(sizeof(*rec), REC_PTRACE);
	if (!rec)
		return 0;
	rec->request = request;
	rec->target_pid = ctx->args[1];
	rec->pad = 0;
	submit(rec, sizeof(*rec));
	return 0;
}

static __always_inline int handle_setid(struct trace_event_raw_sys_enter *ctx, u32 call, int nargs)
{
	if (is_self())
		return 0;
	struct setid_record *rec = reserve(sizeof(*rec), REC_SETID);
	if (!rec)
		return 0;
	rec->call = call;
	rec->ids[0] = ctx->args[0];
	rec->ids[1] = nargs > 1 ? (s32)ctx->args[1] : -1;
	rec->ids[2] = nargs > 2 ? (s32)ctx->args[2] : -1;
	submit(rec, sizeof(*rec));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setuid")
int on_setuid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_UID, 1); }
SEC("tracepoint/syscalls/sys_enter_setgid")
int on_setgid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_GID, 1); }
SEC("tracepoint/syscalls/sys_enter_setreuid")
int on_setreuid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_REUID, 2); }
SEC("tracepoint/syscalls/sys_enter_setregid")
int on_setregid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_REGID, 2); }
SEC("tracepoint/syscalls/sys_enter_setresuid")
int on_setresuid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_RESUID, 3); }
SEC("tracepoint/syscalls/sys_enter_setresgid")
int on_setresgid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_RESGID, 3); }
SEC("tracepoint/syscalls/sys_enter_setfsuid")
int on_setfsuid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_FSUID, 1); }
SEC("tracepoint/syscalls/sys_enter_setfsgid")
int on_setfsgid(struct trace_event_raw_sys_enter *ctx) { return handle_setid(ctx, SET_FSGID, 1); }

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

SEC("tracepoint/syscalls/sys_enter_unshare")
int on_unshare(struct trace_event_raw_sys_enter *ctx)
{
	return handle_ns(0, ctx->args[0], -1);
}

SEC("tracepoint/syscalls/sys_enter_setns")
int on_setns(struct trace_event_raw_sys_enter *ctx)
{
	return handle_ns(1, ctx->args[1], ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_mount")
int on_mount(struct trace_event_raw_sys_enter *ctx)
{
	if (is_self())
		return 0;
	struct mount_record *rec = reserve(sizeof(*rec), REC_MOUNT);
	if (!rec)
		return 0;
	rec->flags = ctx->args[3];
	rec->source[0] = rec->target[0] = rec->fstype[0] = 0;
	bpf_probe_read_user_str(rec->source, sizeof(rec->source), (void *)ctx->args[0]);
	bpf_probe_read_user_str(rec->target, sizeof(rec->target), (void *)ctx->args[1]);
	bpf_probe_read_user_str(rec->fstype, sizeof(rec->fstype), (void *)ctx->args[2]);
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

/* Kernels without module support have neither tracepoint; user space then leaves these two unloaded. */
SEC("tracepoint/syscalls/sys_enter_init_module")
int on_init_module(struct trace_event_raw_sys_enter *ctx)
{
	return handle_module(0, -1, (const char *)ctx->args[2], 0);
}

SEC("tracepoint/syscalls/sys_enter_finit_module")
int on_finit_module(struct trace_event_raw_sys_enter *ctx)
{
	return handle_module(1, ctx->args[0], (const char *)ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_bpf")
int on_bpf(struct trace_event_raw_sys_enter *ctx)
{
	u32 cmd = ctx->args[0];
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
		union bpf_attr *attr = (void *)ctx->args[1];
		bpf_probe_read_user(&rec->prog_type, sizeof(rec->prog_type), &attr->prog_type);
		bpf_probe_read_user_str(rec->prog_name, sizeof(rec->prog_name), &attr->prog_name);
	}
	submit(rec, sizeof(*rec));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_memfd_create")
int on_memfd_create(struct trace_event_raw_sys_enter *ctx)
{
	if (is_self())
		return 0;
	struct memfd_record *rec = reserve(sizeof(*rec), REC_MEMFD);
	if (!rec)
		return 0;
	rec->flags = ctx->args[1];
	rec->pad = 0;
	rec->name[0] = 0;
	bpf_probe_read_user_str(rec->name, sizeof(rec->name), (void *)ctx->args[0]);
	submit(rec, sizeof(*rec));
	return 0;
}
