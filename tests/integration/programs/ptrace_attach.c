/* ptrace-attach: start a child and attach to it with PTRACE_ATTACH, as an injector attaches to a process it is
 * about to write code into; then detach and end the child. */
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	pid_t child = fork();
	if (child == 0) {
		pause();
		return 0;
	}
	if (ptrace(PTRACE_ATTACH, child, NULL, NULL) == 0) {
		waitpid(child, NULL, 0);
		ptrace(PTRACE_DETACH, child, NULL, NULL);
		printf("attached to %d\n", child);
	} else {
		perror("ptrace-attach");
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
