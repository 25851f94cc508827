/* A caller that comes back late to its pending request.
 *
 * Usage: libnatpmp_stall <gateway> <stall-ms> <watch-ms>
 *
 * Sends a public address request to <gateway> (forced, no discovery), does
 * not look at it for <stall-ms> milliseconds, then for <watch-ms>
 * milliseconds waits and calls readnatpmpresponseorretry() as a well-behaved
 * event loop would. Prints the last result as "rc=<code>". The gateway side
 * counts the retransmissions.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#include "natpmp.h"

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int main(int argc, char **argv)
{
	natpmp_t natpmp;
	natpmpresp_t response;
	struct timespec stall;
	long stall_ms, end;
	int r;

	if (argc != 4) {
		fprintf(stderr, "usage: %s <gateway> <stall-ms> <watch-ms>\n", argv[0]);
		return 2;
	}
	stall_ms = atol(argv[2]);
	stall.tv_sec = stall_ms / 1000;
	stall.tv_nsec = (stall_ms % 1000) * 1000000L;

	r = initnatpmp(&natpmp, 1, inet_addr(argv[1]));
	if (r < 0 || sendpublicaddressrequest(&natpmp) < 0) {
		printf("setup failed rc=%d\n", r);
		return 1;
	}
	nanosleep(&stall, NULL);

	end = now_ms() + atol(argv[3]);
	r = NATPMP_TRYAGAIN;
	while (r == NATPMP_TRYAGAIN && now_ms() < end) {
		struct pollfd pfd = { natpmp.s, POLLIN, 0 };
		struct timeval timeout;
		long ms = end - now_ms();
		long due;

		/* a negative wait (a retry already due) is no wait at all */
		if (getnatpmprequesttimeout(&natpmp, &timeout) == 0) {
			due = timeout.tv_sec * 1000L + (timeout.tv_usec + 999) / 1000L;
			if (due < ms)
				ms = due;
		}
		poll(&pfd, 1, ms > 0 ? (int)ms : 0);
		r = readnatpmpresponseorretry(&natpmp, &response);
	}
	printf("rc=%d\n", r);
	closenatpmp(&natpmp);
	return 0;
}
