/* vm-write: start a child and overwrite a variable in its memory with process_vm_writev(2), as an injector writes
 * its payload into another process without ptrace; then end the child. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char target[16] = "original";

int main(void)
{
	pid_t child = fork();
	if (child == 0) {
		pause();
		return 0;
	}
	char payload[16] = "injected";
	struct iovec local = { .iov_base = payload, .iov_len = sizeof(payload) };
	struct iovec remote = { .iov_base = target, .iov_len = sizeof(target) };
	if (process_vm_writev(child, &local, 1, &remote, 1, 0) < 0)
		perror("vm-write");
	else
		printf("wrote %zu bytes into %d\n", sizeof(payload), child);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
