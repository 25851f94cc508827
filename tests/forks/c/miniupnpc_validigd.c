/* Call UPNP_GetValidIGD() on one device whose description URL is given,
 * with LAN and WAN address buffers of exactly the given size, and print
 * what it wrote into them:
 *
 *   miniupnpc_validigd DESCURL ADDRLEN
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miniupnpc.h"

int
main(int argc, char * argv[])
{
	struct UPNPDev * dev;
	struct UPNPUrls urls;
	struct IGDdatas data;
	char * lanaddr, * wanaddr;
	size_t urllen;
	int len, r;

	if(argc != 3) {
		fprintf(stderr, "usage: %s DESCURL ADDRLEN\n", argv[0]);
		return 2;
	}
	len = atoi(argv[2]);
	urllen = strlen(argv[1]);
	dev = calloc(1, sizeof(struct UPNPDev) + urllen + 3);
	lanaddr = malloc(len);
	wanaddr = malloc(len);
	if(!dev || !lanaddr || !wanaddr)
		return 2;
	memcpy(dev->buffer, argv[1], urllen + 1);
	dev->descURL = dev->buffer;
	dev->st = dev->buffer + urllen + 1;
	dev->usn = dev->st + 1;
	memset(lanaddr, 'x', len);
	memset(wanaddr, 'x', len);

	r = UPNP_GetValidIGD(dev, &urls, &data, lanaddr, len, wanaddr, len);
	printf("ret=%d\n", r);
	printf("lanaddr=%s\n", lanaddr);
	printf("wanaddr=%s\n", wanaddr);
	if(r > 0)
		FreeUPNPUrls(&urls);
	free(lanaddr);
	free(wanaddr);
	free(dev);
	return 0;
}
