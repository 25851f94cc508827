/* A NAT-PMP client for the libnatpmp fork tests.
 *
 * Usage: libnatpmp_client <gateway> public
 *        libnatpmp_client <gateway> map <udp|tcp> <private> <public> <lifetime>
 *
 * Sends one request to <gateway> (always forced: no gateway discovery), waits
 * for the outcome with poll() and readnatpmpresponseorretry(), and prints one
 * line: "rc=<code> <strnatpmperr text>", followed on success by the fields of
 * the response. Gives up after DEADLINE_MS whatever the library says, so a
 * test never hangs. Exit status: 0 on success, 1 on a library error, 2 on a
 * usage error, 3 if the deadline passed.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "natpmp.h"

#define DEADLINE_MS 5000

static long elapsed_ms(const struct timeval *start)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - start->tv_sec) * 1000L
	       + (now.tv_usec - start->tv_usec) / 1000L;
}

static int wait_for_outcome(natpmp_t *natpmp, natpmpresp_t *response)
{
	struct timeval start;
	int r;

	gettimeofday(&start, NULL);
	do {
		struct pollfd pfd = { natpmp->s, POLLIN, 0 };
		struct timeval timeout;
		long ms = 0;

		if (elapsed_ms(&start) > DEADLINE_MS) {
			printf("deadline passed\n");
			exit(3);
		}
		if (getnatpmprequesttimeout(natpmp, &timeout) == 0)
			ms = timeout.tv_sec * 1000L + timeout.tv_usec / 1000L;
		if (ms < 0)
			ms = 0;
		if (ms > 1000)
			ms = 1000;
		poll(&pfd, 1, (int)ms);
		r = readnatpmpresponseorretry(natpmp, response);
	} while (r == NATPMP_TRYAGAIN);
	return r;
}

static void print_response(const natpmpresp_t *response)
{
	printf("type=%u resultcode=%u epoch=%u", response->type,
	       response->resultcode, response->epoch);
	if (response->type == NATPMP_RESPTYPE_PUBLICADDRESS)
		printf(" address=%s\n", inet_ntoa(response->pnu.publicaddress.addr));
	else
		printf(" private=%u public=%u lifetime=%u\n",
		       response->pnu.newportmapping.privateport,
		       response->pnu.newportmapping.mappedpublicport,
		       response->pnu.newportmapping.lifetime);
}

int main(int argc, char **argv)
{
	natpmp_t natpmp;
	natpmpresp_t response;
	int r;

	if (argc < 3) {
		fprintf(stderr, "usage: %s <gateway> public|map ...\n", argv[0]);
		return 2;
	}
	r = initnatpmp(&natpmp, 1, inet_addr(argv[1]));
	if (r < 0) {
		printf("initnatpmp rc=%d %s\n", r, strnatpmperr(r));
		return 1;
	}

	if (strcmp(argv[2], "public") == 0 && argc == 3) {
		r = sendpublicaddressrequest(&natpmp);
	} else if (strcmp(argv[2], "map") == 0 && argc == 7) {
		int protocol = strcmp(argv[3], "tcp") == 0 ? NATPMP_PROTOCOL_TCP
							   : NATPMP_PROTOCOL_UDP;
		r = sendnewportmappingrequest(&natpmp, protocol,
					      (uint16_t)atoi(argv[4]),
					      (uint16_t)atoi(argv[5]),
					      (uint32_t)strtoul(argv[6], NULL, 10));
	} else {
		fprintf(stderr, "%s: bad command %s\n", argv[0], argv[2]);
		return 2;
	}
	if (r < 0) {
		printf("send rc=%d %s\n", r, strnatpmperr(r));
		return 1;
	}

	r = wait_for_outcome(&natpmp, &response);
	printf("rc=%d %s\n", r, r == 0 ? "ok" : strnatpmperr(r));
	if (r == 0)
		print_response(&response);
	closenatpmp(&natpmp);
	return r == 0 ? 0 : 1;
}
