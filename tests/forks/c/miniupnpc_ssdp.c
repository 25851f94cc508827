/* Run SSDP discovery against replies sent from a child process, inside a
 * network namespace of its own that holds nothing but a loopback interface,
 * so that the M-SEARCH has nowhere to go and the replies come from 127.0.0.1.
 *
 *   miniupnpc_ssdp LOCATION2
 *
 * Two replies with the same ST and USN are sent: the first with LOCATION
 * http://127.0.0.1:1/a, the second with LOCATION2, where "\0" stands for a
 * NUL byte. Prints the devices found; exits 77 if no namespace can be made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "miniupnpc.h"
#include "minissdpc.h"

#define LOCAL_PORT 40000

static int
own_network_namespace(void)
{
	struct ifreq ifr;
	int s;

	if(unshare(CLONE_NEWNET) < 0
	   && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
		printf("cannot make a network namespace: %s\n", strerror(errno));
		return -1;
	}
	s = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if(s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		perror("SIOCGIFFLAGS");
		return -1;
	}
	ifr.ifr_flags |= IFF_UP;
	if(ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		perror("SIOCSIFFLAGS");
		return -1;
	}
	close(s);
	return 0;
}

/* the reply, with "\0" in the location turned into a NUL byte */
static int
reply(char * buf, size_t size, const char * location)
{
	int n = snprintf(buf, size, "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
	                 "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
	                 "USN: uuid:natfwd-test::upnp:rootdevice\r\nLOCATION: ");
	const char * p;
	for(p = location; *p && n < (int)size - 8; p++) {
		if(p[0] == '\\' && p[1] == '0') {
			buf[n++] = '\0';
			p++;
		} else
			buf[n++] = *p;
	}
	memcpy(buf + n, "\r\n\r\n", 4);
	return n + 4;
}

static void
responder(const char * location2)
{
	struct sockaddr_in to;
	char buf[1400];
	int s = socket(AF_INET, SOCK_DGRAM, 0), i, n;

	memset(&to, 0, sizeof(to));
	to.sin_family = AF_INET;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons(LOCAL_PORT);
	usleep(300000);	/* let discovery bind its port */
	for(i = 0; i < 3; i++) {
		n = reply(buf, sizeof(buf), "http://127.0.0.1:1/a");
		sendto(s, buf, n, 0, (struct sockaddr *)&to, sizeof(to));
		usleep(20000);
		n = reply(buf, sizeof(buf), location2);
		sendto(s, buf, n, 0, (struct sockaddr *)&to, sizeof(to));
		usleep(20000);
	}
	_exit(0);
}

int
main(int argc, char * argv[])
{
	static const char * const types[] = {
		"urn:schemas-upnp-org:device:InternetGatewayDevice:1", NULL
	};
	struct UPNPDev * devs, * d;
	int error = 0, status;
	pid_t child;

	if(argc != 2) {
		fprintf(stderr, "usage: %s LOCATION2\n", argv[0]);
		return 2;
	}
	alarm(30);
	if(own_network_namespace() < 0)
		return 77;
	child = fork();
	if(child < 0) {
		perror("fork");
		return 2;
	}
	if(child == 0)
		responder(argv[1]);

	devs = ssdpDiscoverDevices(types, 1000, NULL, LOCAL_PORT, 0, 2, &error, 0);
	waitpid(child, &status, 0);
	for(d = devs; d; d = d->pNext)
		printf("device %s\n", d->descURL);
	freeUPNPDevlist(devs);
	return 0;
}
