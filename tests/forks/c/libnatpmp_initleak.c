/* Calls initnatpmp() again and again where it cannot succeed.
 *
 * Usage: libnatpmp_initleak <count> [<forced gateway>]
 *
 * Without a gateway argument the library looks for the default route; run
 * where there is none. With one, the gateway should be an address connect()
 * refuses, such as 255.255.255.255. Prints "rc=<last result> leaked=<n>",
 * where n is how many more descriptors are open after the calls than before.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "natpmp.h"

static int open_descriptors(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int count = 0;

	if (dir == NULL) {
		perror("/proc/self/fd");
		exit(2);
	}
	while (readdir(dir) != NULL)
		count++;
	closedir(dir);
	return count;
}

int main(int argc, char **argv)
{
	natpmp_t natpmp;
	int before, count, i;
	int r = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s <count> [<forced gateway>]\n", argv[0]);
		return 2;
	}
	count = atoi(argv[1]);

	before = open_descriptors();
	for (i = 0; i < count; i++) {
		if (argc == 3)
			r = initnatpmp(&natpmp, 1, inet_addr(argv[2]));
		else
			r = initnatpmp(&natpmp, 0, 0);
		if (r == 0) {
			printf("rc=0 initnatpmp succeeded\n");
			closenatpmp(&natpmp);
			return 1;
		}
	}
	printf("rc=%d leaked=%d\n", r, open_descriptors() - before);
	return 0;
}
