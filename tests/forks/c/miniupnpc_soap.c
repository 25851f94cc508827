/* Drive the SOAP actions of miniupnpc against a control URL given on the
 * command line and print what the library hands back, one "key=value" line
 * each, so that the test on the other side of the socket can compare.
 *
 *   miniupnpc_soap URL add DESCRIPTION
 *   miniupnpc_soap URL specific
 *   miniupnpc_soap URL generic
 *   miniupnpc_soap URL delrange SERVICETYPE
 *   miniupnpc_soap URL list
 */
#include <stdio.h>
#include <string.h>

#include "upnpcommands.h"
#include "portlistingparse.h"

#define SERVICE "urn:schemas-upnp-org:service:WANIPConnection:1"

int
main(int argc, char * argv[])
{
	char client[16], port[6], desc[80], enabled[4], lease[16];
	char ext[6], proto[4], rhost[64];
	int r;

	if(argc < 3) {
		fprintf(stderr, "usage: %s URL add DESC | specific | generic"
		        " | delrange SERVICETYPE | list\n", argv[0]);
		return 2;
	}
	memset(desc, 0, sizeof(desc));
	if(strcmp(argv[2], "add") == 0 && argc == 4) {
		r = UPNP_AddPortMapping(argv[1], SERVICE, "4321", "4321",
		                        "127.0.0.1", argv[3], "TCP", NULL, "0");
		printf("ret=%d\n", r);
	} else if(strcmp(argv[2], "specific") == 0) {
		r = UPNP_GetSpecificPortMappingEntry(argv[1], SERVICE, "4321", "TCP",
		                                     NULL, client, port, desc,
		                                     enabled, lease);
		printf("ret=%d\nclient=%s\ndesc=%s\n", r, client, desc);
	} else if(strcmp(argv[2], "generic") == 0) {
		r = UPNP_GetGenericPortMappingEntry(argv[1], SERVICE, "0", ext,
		                                    client, port, proto, desc,
		                                    enabled, rhost, lease);
		printf("ret=%d\nclient=%s\ndesc=%s\n", r, client, desc);
	} else if(strcmp(argv[2], "delrange") == 0 && argc == 4) {
		r = UPNP_DeletePortMappingRange(argv[1], argv[3], "4321", "4330",
		                                "TCP", "0");
		printf("ret=%d\n", r);
	} else if(strcmp(argv[2], "list") == 0) {
		struct PortMappingParserData list;
		struct PortMapping * pm;
		r = UPNP_GetListOfPortMappings(argv[1], SERVICE, "0", "65535", "TCP",
		                               "100", &list);
		printf("ret=%d\n", r);
		if(r == 0) {
			for(pm = list.l_head; pm; pm = pm->l_next)
				printf("entry=%s|%hu|%s|%hu|%s|%s\n", pm->protocol,
				       pm->externalPort, pm->internalClient,
				       pm->internalPort, pm->remoteHost, pm->description);
			FreePortListing(&list);
		}
	} else {
		fprintf(stderr, "unknown action %s\n", argv[2]);
		return 2;
	}
	return r == 0 ? 0 : 1;
}
