/* bpf-load: ask the kernel to load a two-instruction socket filter ("return 0") named "probe" with bpf(2). Without
 * CAP_BPF the kernel refuses; the attempt is what an intruder's loader makes first. */
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	struct bpf_insn program[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (unsigned long)program;
	attr.insn_cnt = sizeof(program) / sizeof(program[0]);
	attr.license = (unsigned long)"GPL";
	strncpy(attr.prog_name, "probe", sizeof(attr.prog_name) - 1);
	long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd < 0)
		perror("bpf-load");
	else
		printf("loaded: fd %ld\n", fd);
	return 0;
}
