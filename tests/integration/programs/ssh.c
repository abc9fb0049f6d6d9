/* ssh -p PORT HOST: the client side of an SSH connection's start: connect (giving up after a second) and send the
 * protocol identification line. Enough of an SSH client for a sensor, which sees the program and its connect. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4 || strcmp(argv[1], "-p") != 0) {
		fprintf(stderr, "usage: ssh -p PORT HOST\n");
		return 2;
	}
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1) {
		fprintf(stderr, "ssh: %s is not an IPv4 address\n", argv[3]);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (connect(fd, (struct sockaddr *)&peer, sizeof(peer)) < 0) {
		struct pollfd wait = { .fd = fd, .events = POLLOUT };
		if (poll(&wait, 1, 1000) != 1) {
			fprintf(stderr, "ssh: connect to %s port %s: timed out\n", argv[3], argv[2]);
			return 255;
		}
	}
	const char banner[] = "SSH-2.0-OpenSSH_9.2\r\n";
	if (write(fd, banner, sizeof(banner) - 1) < 0)
		perror("ssh");
	close(fd);
	return 0;
}
