/* natfwd's Windows smoke test: both forks, statically linked, under wine.
 *
 *   smoke natpmp           NAT-PMP public-address request to 127.0.0.1:5351,
 *                          where nothing answers: must end in an error code
 *                          or still be waiting at the deadline, never crash
 *   smoke parse            miniupnpc's description parser on a canned IGD
 *   smoke fetch URL        miniwget URL: how long it took and what came back
 *   smoke recv PORT        connect to 127.0.0.1:PORT as miniupnpc does, print
 *                          the socket timeouts it set, then block in recv()
 *                          on a server that never answers and time it
 *
 * Each prints key=value lines for tests/windows/test_windows.py and exits 0
 * when the library behaved as documented.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <winsock2.h>
#include <windows.h>

#include "natpmp.h"
#include "miniupnpc.h"
#include "miniwget.h"
#include "igd_desc_parse.h"

/* Not in miniupnpc's public headers, but in the static library: the
 * function every HTTP and SOAP request opens its socket with. */
SOCKET connecthostport(const char *host, unsigned short port,
                       unsigned int scope_id);

/* Bounds for the NAT-PMP loop: the library backs off up to minutes. */
#define NATPMP_DEADLINE_MS 4000
#define NATPMP_MAX_ROUNDS 64

static const char igd_description[] =
	"<?xml version=\"1.0\"?>\r\n"
	"<root xmlns=\"urn:schemas-upnp-org:device-1-0\">"
	"<specVersion><major>1</major><minor>0</minor></specVersion>"
	"<URLBase>http://127.0.0.1:5000/</URLBase>"
	"<device>"
	"<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>"
	"<friendlyName>natfwd smoke gateway</friendlyName>"
	"<deviceList><device>"
	"<deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>"
	"<serviceList><service>"
	"<serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
	"</serviceType>"
	"<controlURL>/ctl/CmnIfCfg</controlURL>"
	"<eventSubURL>/evt/CmnIfCfg</eventSubURL>"
	"<SCPDURL>/WANCfg.xml</SCPDURL>"
	"</service></serviceList>"
	"<deviceList><device>"
	"<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>"
	"<serviceList><service>"
	"<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>"
	"<controlURL>/ctl/IPConn</controlURL>"
	"<eventSubURL>/evt/IPConn</eventSubURL>"
	"<SCPDURL>/WANIPCn.xml</SCPDURL>"
	"</service></serviceList>"
	"</device></deviceList>"
	"</device></deviceList>"
	"</device></root>";

static int smoke_natpmp(void)
{
	natpmp_t natpmp;
	natpmpresp_t response;
	ULONGLONG start = GetTickCount64();
	int rounds = 0;
	int r;

	/* A forced gateway: nothing is looked up, nothing leaves loopback. */
	r = initnatpmp(&natpmp, 1, inet_addr("127.0.0.1"));
	if (r < 0) {
		printf("natpmp_init=%d\n", r);
		return 1;
	}

	r = sendpublicaddressrequest(&natpmp);
	printf("natpmp_send=%d\n", r);
	if (r < 0) {
		closenatpmp(&natpmp);
		return 1;
	}

	do {
		struct timeval timeout;
		fd_set fds;

		FD_ZERO(&fds);
		FD_SET(natpmp.s, &fds);
		if (getnatpmprequesttimeout(&natpmp, &timeout) < 0)
			break;
		if (timeout.tv_sec > 1) {
			timeout.tv_sec = 1;
			timeout.tv_usec = 0;
		}
		select(FD_SETSIZE, &fds, NULL, NULL, &timeout);
		r = readnatpmpresponseorretry(&natpmp, &response);
		rounds++;
	} while (r == NATPMP_TRYAGAIN && rounds < NATPMP_MAX_ROUNDS
	         && GetTickCount64() - start < NATPMP_DEADLINE_MS);

	printf("natpmp_result=%d\n", r);
	printf("natpmp_error=%s\n", strnatpmperr(r));
	printf("natpmp_rounds=%d\n", rounds);
	printf("natpmp_ms=%llu\n", (unsigned long long)(GetTickCount64() - start));
	closenatpmp(&natpmp);

	/* Nothing listens there: any outcome but a mapping is right. */
	return r >= 0 ? 1 : 0;
}

static int smoke_parse(void)
{
	struct IGDdatas data;
	struct UPNPUrls urls;
	int ok;

	memset(&data, 0, sizeof(data));
	memset(&urls, 0, sizeof(urls));
	parserootdesc(igd_description, (int)sizeof(igd_description) - 1, &data);
	GetUPNPUrls(&urls, &data, "http://127.0.0.1:5000/rootDesc.xml", 0);

	printf("parse_urlbase=%s\n", data.urlbase);
	printf("parse_servicetype=%s\n", data.first.servicetype);
	printf("parse_controlurl=%s\n", urls.controlURL);
	printf("parse_cif_controlurl=%s\n", urls.controlURL_CIF);
	ok = strcmp(urls.controlURL, "http://127.0.0.1:5000/ctl/IPConn") == 0
	     && strcmp(data.first.servicetype,
	               "urn:schemas-upnp-org:service:WANIPConnection:1") == 0;
	FreeUPNPUrls(&urls);
	return ok ? 0 : 1;
}

static int smoke_fetch(const char *url)
{
	ULONGLONG start = GetTickCount64();
	int size = 0;
	int status = 0;
	char *body;

	body = miniwget(url, &size, 0, &status);
	printf("fetch_ms=%llu\n", (unsigned long long)(GetTickCount64() - start));
	printf("fetch_status=%d\n", status);
	printf("fetch_size=%d\n", body ? size : -1);
	free(body);
	return 0;
}

static int smoke_recv(unsigned short port)
{
	DWORD rcvtimeo = 0;
	DWORD sndtimeo = 0;
	int len = (int)sizeof(DWORD);
	ULONGLONG start;
	char byte;
	SOCKET s;
	int n;

	s = connecthostport("127.0.0.1", port, 0);
	if (s == INVALID_SOCKET) {
		printf("recv_connect=failed\n");
		return 1;
	}
	getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (char *)&rcvtimeo, &len);
	len = (int)sizeof(DWORD);
	getsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (char *)&sndtimeo, &len);
	printf("recv_rcvtimeo_ms=%lu\n", (unsigned long)rcvtimeo);
	printf("recv_sndtimeo_ms=%lu\n", (unsigned long)sndtimeo);

	start = GetTickCount64();
	n = recv(s, &byte, 1, 0);
	printf("recv_result=%d\n", n);
	printf("recv_error=%d\n", n < 0 ? WSAGetLastError() : 0);
	printf("recv_ms=%llu\n", (unsigned long long)(GetTickCount64() - start));
	closesocket(s);
	return 0;
}

int main(int argc, char **argv)
{
	WSADATA wsa;
	int r;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
		fprintf(stderr, "WSAStartup failed\n");
		return 2;
	}

	if (argc == 2 && strcmp(argv[1], "natpmp") == 0)
		r = smoke_natpmp();
	else if (argc == 2 && strcmp(argv[1], "parse") == 0)
		r = smoke_parse();
	else if (argc == 3 && strcmp(argv[1], "fetch") == 0)
		r = smoke_fetch(argv[2]);
	else if (argc == 3 && strcmp(argv[1], "recv") == 0)
		r = smoke_recv((unsigned short)atoi(argv[2]));
	else {
		fprintf(stderr, "usage: smoke natpmp | parse | fetch URL | recv PORT\n");
		r = 2;
	}

	WSACleanup();
	return r;
}
