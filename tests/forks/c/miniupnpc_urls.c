/* Print the control URL GetUPNPUrls() builds from a description URL, a
 * relative control URL and an interface index (the scope of a link-local
 * address):
 *
 *   miniupnpc_urls DESCURL CONTROLURL SCOPE_ID
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miniupnpc.h"

int
main(int argc, char * argv[])
{
	struct IGDdatas * data;
	struct UPNPUrls urls;

	if(argc != 4) {
		fprintf(stderr, "usage: %s DESCURL CONTROLURL SCOPE_ID\n", argv[0]);
		return 2;
	}
	data = calloc(1, sizeof(*data));
	if(!data)
		return 2;
	strncpy(data->first.controlurl, argv[2], MINIUPNPC_URL_MAXSIZE - 1);
	strncpy(data->first.scpdurl, argv[2], MINIUPNPC_URL_MAXSIZE - 1);
	strncpy(data->CIF.controlurl, argv[2], MINIUPNPC_URL_MAXSIZE - 1);
	strncpy(data->IPv6FC.controlurl, argv[2], MINIUPNPC_URL_MAXSIZE - 1);

	memset(&urls, 0, sizeof(urls));
	GetUPNPUrls(&urls, data, argv[1], (unsigned int)strtoul(argv[3], NULL, 10));
	printf("control=%s\n", urls.controlURL ? urls.controlURL : "(null)");
	FreeUPNPUrls(&urls);
	free(data);
	return 0;
}
