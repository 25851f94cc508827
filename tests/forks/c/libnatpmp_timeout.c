/* Asks getnatpmprequesttimeout() for the wait after the retry became due.
 *
 * Usage: libnatpmp_timeout <gateway> <late-ms>
 *
 * Sends a public address request to <gateway> (forced, no discovery), sleeps
 * <late-ms> milliseconds without reading, then prints the timeout the library
 * gives and what select() makes of it, as a caller such as natpmpc would use
 * it: "timeout=<sec>.<usec> select=<result> errno=<errno>".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <time.h>

#include "natpmp.h"

int main(int argc, char **argv)
{
	natpmp_t natpmp;
	struct timeval timeout;
	struct timespec late;
	long ms;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <gateway> <late-ms>\n", argv[0]);
		return 2;
	}
	ms = atol(argv[2]);
	late.tv_sec = ms / 1000;
	late.tv_nsec = (ms % 1000) * 1000000L;

	r = initnatpmp(&natpmp, 1, inet_addr(argv[1]));
	if (r < 0 || sendpublicaddressrequest(&natpmp) < 0) {
		printf("setup failed rc=%d\n", r);
		return 1;
	}
	nanosleep(&late, NULL);

	r = getnatpmprequesttimeout(&natpmp, &timeout);
	if (r < 0) {
		printf("getnatpmprequesttimeout rc=%d\n", r);
		return 1;
	}
	printf("timeout=%ld.%06ld", (long)timeout.tv_sec, (long)timeout.tv_usec);
	errno = 0;
	r = select(0, NULL, NULL, NULL, &timeout);
	printf(" select=%d errno=%d\n", r, r < 0 ? errno : 0);
	closenatpmp(&natpmp);
	return 0;
}
