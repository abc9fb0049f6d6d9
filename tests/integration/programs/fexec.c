/* fexec memfd|PATH: copy /bin/busybox into an anonymous memory file named "payload" (memfd) or into PATH, which it
 * unlinks once opened, and run that through its descriptor (fexecve) as busybox's "true": the two ways a loader
 * runs a program that is in no directory. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int copy(int from, int to)
{
	char buffer[65536];
	ssize_t got;
	while ((got = read(from, buffer, sizeof(buffer))) > 0)
		if (write(to, buffer, got) != got)
			return -1;
	return got < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fexec memfd|PATH\n");
		return 2;
	}
	int in_memory = strcmp(argv[1], "memfd") == 0;
	int source = open("/bin/busybox", O_RDONLY);
	int fd = in_memory ? memfd_create("payload", 0) : open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0755);
	if (source < 0 || fd < 0 || copy(source, fd) < 0) {
		perror("fexec: copy");
		return 1;
	}
	if (!in_memory) { /* a descriptor open for writing cannot be executed (ETXTBSY) */
		close(fd);
		fd = open(argv[1], O_RDONLY);
		if (fd < 0 || unlink(argv[1]) < 0) {
			perror("fexec: unlink");
			return 1;
		}
	}
	char *args[] = { "true", NULL };
	char *env[] = { NULL };
	fexecve(fd, args, env);
	perror("fexec: fexecve");
	return 1;
}
