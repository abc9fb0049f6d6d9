/* unix-connect PATH: connect to a Unix socket (a container runtime's API socket mounted into the container) and
 * hang up, the first thing any runtime client (docker, ctr, crictl) does. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "usage: unix-connect PATH\n");
		return 2;
	}
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	strcpy(address.sun_path, argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
		perror("unix-connect");
		return 1;
	}
	printf("connected to %s\n", argv[1]);
	close(fd);
	return 0;
}
