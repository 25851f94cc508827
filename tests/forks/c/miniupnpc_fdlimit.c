/* Make miniupnpc wait on a socket whose descriptor is above FD_SETSIZE.
 *
 * The harness fills the descriptor table up to FD_SETSIZE + 8 so that the
 * library's next socket lands beyond it, then points the library at two
 * peers on 127.0.0.1 that never let a request through:
 *
 *   - a listener whose accept queue is full, so that connect() hangs;
 *   - a listener that accepts (the kernel does) but never answers.
 *
 * Each call must give up with an error after its own timeout. Prints one
 * line per case; exits 77 if the descriptor limit cannot be raised.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "connecthostport.h"
#include "upnpcommands.h"

#define SERVICE "urn:schemas-upnp-org:service:WANIPConnection:1"

static int
listener(int backlog, unsigned short * port)
{
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if(s < 0 || bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0
	   || listen(s, backlog) < 0
	   || getsockname(s, (struct sockaddr *)&addr, &len) < 0) {
		perror("listener");
		exit(2);
	}
	*port = ntohs(addr.sin_port);
	return s;
}

/* connect without waiting, to take a place in the accept queue */
static void
queue_client(unsigned short port)
{
	struct sockaddr_in addr;
	int c = socket(AF_INET, SOCK_STREAM, 0);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(port);
	fcntl(c, F_SETFL, O_NONBLOCK);
	if(connect(c, (struct sockaddr *)&addr, sizeof(addr)) < 0
	   && errno != EINPROGRESS) {
		perror("connect");
		exit(2);
	}
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(void)
{
	struct rlimit rl;
	unsigned short full_port, mute_port;
	char url[64], ip[16];
	double t;
	int s, r, fd;

	alarm(60);	/* whatever happens, never hang the test run */
	if(getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		perror("getrlimit");
		return 2;
	}
	if(rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FD_SETSIZE + 64) {
		printf("hard descriptor limit %lu is below %d\n",
		       (unsigned long)rl.rlim_max, FD_SETSIZE + 64);
		return 77;
	}
	rl.rlim_cur = FD_SETSIZE + 64;
	if(setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		perror("setrlimit");
		return 77;
	}

	s = listener(0, &full_port);
	queue_client(full_port);	/* the only place in the queue... */
	queue_client(full_port);	/* ...so these SYNs are dropped */
	usleep(100000);
	listener(16, &mute_port);

	while((fd = dup(0)) >= 0 && fd < FD_SETSIZE + 8)
		;
	if(fd < 0) {
		perror("dup");
		return 2;
	}
	printf("next descriptor above %d\n", fd);
	fflush(stdout);

	t = now();
	s = connecthostport("127.0.0.1", full_port, 0);
	printf("connect to full queue: %s after %.1f s\n",
	       s < 0 ? "failed" : "connected", now() - t);
	fflush(stdout);

	snprintf(url, sizeof(url), "http://127.0.0.1:%hu/ctl", full_port);
	t = now();
	r = UPNP_GetExternalIPAddress(url, SERVICE, ip);
	printf("soap to full queue: %d after %.1f s\n", r, now() - t);
	fflush(stdout);

	snprintf(url, sizeof(url), "http://127.0.0.1:%hu/ctl", mute_port);
	t = now();
	r = UPNP_GetExternalIPAddress(url, SERVICE, ip);
	printf("soap to mute peer: %d after %.1f s\n", r, now() - t);
	return 0;
}
