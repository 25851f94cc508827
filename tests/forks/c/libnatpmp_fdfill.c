/* Runs a program with every descriptor below a number already in use.
 *
 * Usage: libnatpmp_fdfill <count> <program> [args...]
 *
 * Opens /dev/null on each free descriptor from 3 to <count> - 1, then execs
 * <program>, so the first socket it opens gets a descriptor of <count> or
 * more: past FD_SETSIZE (1024) when <count> is larger, as in a process that
 * holds many connections or files.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int count;
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: %s <count> <program> [args...]\n", argv[0]);
		return 2;
	}
	count = atoi(argv[1]);

	for (fd = 3; fd < count; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || (null != fd && dup2(null, fd) != fd)) {
			perror("libnatpmp_fdfill");
			return 2;
		}
		if (null != fd)
			close(null);
	}

	execvp(argv[2], argv + 2);
	perror(argv[2]);
	return 2;
}
