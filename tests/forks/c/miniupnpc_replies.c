/* Call one SOAP action of miniupnpc against the control URL given on the
 * command line and print the code it returns as "ret=N", so that a test
 * can serve any reply it likes and check how the library reads it.
 *
 *   miniupnpc_replies URL add | delete | delrange | anyadd | extip
 *                        | specific | generic | count | list
 *   miniupnpc_replies URL specific-desc0 | generic-desc0 | generic-rhost0
 *
 * The last three give the *Ext getters a zero buffer length, with buffers
 * allocated to the byte so that AddressSanitizer sees any write before
 * them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upnpcommands.h"
#include "portlistingparse.h"

#define SERVICE "urn:schemas-upnp-org:service:WANIPConnection:1"

static int
ext_getter(const char * url, const char * how)
{
	char client[16], port[6], ext[6], proto[4], enabled[4], lease[16];
	char * desc = malloc(1);
	char * rhost = malloc(1);
	size_t desclen = 1, rhostlen = 1;
	int r;

	if(!desc || !rhost)
		return 99;
	if(strcmp(how, "specific-desc0") == 0 || strcmp(how, "generic-desc0") == 0)
		desclen = 0;
	else
		rhostlen = 0;
	if(strcmp(how, "specific-desc0") == 0)
		r = UPNP_GetSpecificPortMappingEntryExt(url, SERVICE, "4321", "TCP",
		                                        NULL, client, port,
		                                        desc, desclen, enabled, lease);
	else
		r = UPNP_GetGenericPortMappingEntryExt(url, SERVICE, "0", ext, client,
		                                       port, proto, desc, desclen,
		                                       enabled, rhost, rhostlen,
		                                       lease);
	free(desc);
	free(rhost);
	return r;
}

int
main(int argc, char * argv[])
{
	char client[16], port[6], desc[80], enabled[4], lease[16];
	char ext[6], proto[4], rhost[64], addr[16];
	const char * url, * how;
	unsigned int count;
	int r;

	if(argc != 3) {
		fprintf(stderr, "usage: %s URL ACTION\n", argv[0]);
		return 2;
	}
	url = argv[1];
	how = argv[2];
	if(strcmp(how, "add") == 0)
		r = UPNP_AddPortMapping(url, SERVICE, "4321", "4321", "127.0.0.1",
		                        "natfwd", "TCP", NULL, "0");
	else if(strcmp(how, "delete") == 0)
		r = UPNP_DeletePortMapping(url, SERVICE, "4321", "TCP", NULL);
	else if(strcmp(how, "delrange") == 0)
		r = UPNP_DeletePortMappingRange(url, SERVICE, "4321", "4330", "TCP",
		                                "0");
	else if(strcmp(how, "anyadd") == 0)
		r = UPNP_AddAnyPortMapping(url, SERVICE, "4321", "4321", "127.0.0.1",
		                           "natfwd", "TCP", NULL, "0", port);
	else if(strcmp(how, "extip") == 0) {
		r = UPNP_GetExternalIPAddress(url, SERVICE, addr);
		if(r == 0)
			printf("addr=%s\n", addr);
	} else if(strcmp(how, "specific") == 0)
		r = UPNP_GetSpecificPortMappingEntry(url, SERVICE, "4321", "TCP",
		                                     NULL, client, port, desc,
		                                     enabled, lease);
	else if(strcmp(how, "generic") == 0)
		r = UPNP_GetGenericPortMappingEntry(url, SERVICE, "0", ext, client,
		                                    port, proto, desc, enabled,
		                                    rhost, lease);
	else if(strcmp(how, "count") == 0)
		r = UPNP_GetPortMappingNumberOfEntries(url, SERVICE, &count);
	else if(strcmp(how, "list") == 0) {
		struct PortMappingParserData list;
		r = UPNP_GetListOfPortMappings(url, SERVICE, "0", "65535", "TCP",
		                               "100", &list);
		if(r == 0)
			FreePortListing(&list);
	} else if(strncmp(how, "specific-", 9) == 0
	          || strncmp(how, "generic-", 8) == 0)
		r = ext_getter(url, how);
	else {
		fprintf(stderr, "unknown action %s\n", how);
		return 2;
	}
	printf("ret=%d\n", r);
	return 0;
}
