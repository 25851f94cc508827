/* Feed documents to every miniupnpc parser in exactly sized heap buffers,
 * so that AddressSanitizer reports any read past their end.
 *
 *   miniupnpc_truncate xml FILE...     every prefix to the XML parsers
 *   miniupnpc_truncate http FILE...    every prefix as an HTTP response
 *   miniupnpc_truncate ssdpd FILE...   every prefix as a minissdpd reply
 *   miniupnpc_truncate mutate SEED ROUNDS FILE...
 *                                      random damage, then the XML and
 *                                      HTTP parsers
 *
 * Prints how many inputs it ran; any finding aborts with ASan's report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "minixml.h"
#include "upnpreplyparse.h"
#include "portlistingparse.h"
#include "igd_desc_parse.h"
#include "miniupnpc.h"
#include "minissdpc.h"
#include "miniwget_private.h"

static unsigned long touched;

static void
touch(const char * s, int l)
{
	int i;
	if(l < 0) {
		fprintf(stderr, "negative length %d from the parser\n", l);
		abort();
	}
	for(i = 0; i < l; i++)
		touched += (unsigned char)s[i];
}

static void
on_elt(void * d, const char * name, int l)
{
	(void)d;
	touch(name, l);
}

static void
on_att(void * d, const char * name, int l, const char * value, int vl)
{
	(void)d;
	touch(name, l);
	touch(value, vl);
}

static void
run_xml(const char * doc, int len)
{
	struct xmlparser parser;
	struct NameValueParserData nv;
	struct PortMappingParserData pm;
	struct IGDdatas igd;

	memset(&parser, 0, sizeof(parser));
	parser.xmlstart = doc;
	parser.xmlsize = len;
	parser.starteltfunc = on_elt;
	parser.endeltfunc = on_elt;
	parser.datafunc = on_elt;
	parser.attfunc = on_att;
	parsexml(&parser);

	ParseNameValue(doc, len, &nv);
	touch(GetValueFromNameValueList(&nv, "NewPortMappingDescription"), 0);
	if(nv.portListing) {
		/* the document carried in a GetListOfPortMappings reply */
		ParsePortListing(nv.portListing, nv.portListingLength, &pm);
		FreePortListing(&pm);
	}
	ClearNameValueList(&nv);

	ParsePortListing(doc, len, &pm);
	FreePortListing(&pm);

	memset(&igd, 0, sizeof(igd));
	parserootdesc(doc, len, &igd);
}

/* write the bytes into one end of a socket pair, close it, and let the
 * library read them from the other end as it would from a peer */
static int
socket_with(const char * doc, int len)
{
	int sv[2];
	if(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
	if(len > 0 && write(sv[0], doc, len) != len) {
		perror("write");
		exit(2);
	}
	close(sv[0]);
	return sv[1];
}

static void
run_http(const char * doc, int len)
{
	int s = socket_with(doc, len);
	int size = 0, status = 0;
	char * body = getHTTPResponse(s, &size, &status);
	if(body)
		touch(body, size);
	free(body);
	close(s);
}

static void
run_ssdpd(const char * doc, int len)
{
	int s = socket_with(doc, len);
	int error = 0;
	struct UPNPDev * devs = receiveDevicesFromMiniSSDPD(s, &error), * d;
	for(d = devs; d; d = d->pNext)
		touch(d->descURL, (int)strlen(d->descURL));
	freeUPNPDevlist(devs);
	close(s);
}

static char *
slurp(const char * path, int * len)
{
	FILE * f = fopen(path, "rb");
	char * buf;
	long n;
	if(!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0) {
		perror(path);
		exit(2);
	}
	rewind(f);
	buf = malloc(n ? n : 1);
	if(!buf || fread(buf, 1, n, f) != (size_t)n) {
		perror(path);
		exit(2);
	}
	fclose(f);
	*len = (int)n;
	return buf;
}

/* call fn on a copy of doc[0..len) in a buffer of exactly that size */
static void
exact(void (*fn)(const char *, int), const char * doc, int len)
{
	char * copy = malloc(len);
	if(!copy && len) {
		perror("malloc");
		exit(2);
	}
	memcpy(copy, doc, len);
	fn(copy, len);
	free(copy);
}

static unsigned long long rng;

static unsigned int
next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned int)(rng >> 11);
}

/* characters that steer the parsers into their less travelled states */
static const char alphabet[] = "<>/=\"' \r\n:!-[]?&#;0123456789aAfFx";

static int
mutate(char * buf, int len, int cap)
{
	int k, rounds = 1 + next_random() % 4;
	for(k = 0; k < rounds; k++) {
		int pos = len ? next_random() % len : 0;
		char c = alphabet[next_random() % (sizeof(alphabet) - 1)];
		switch(next_random() % 4) {
		case 0: /* overwrite */
			if(len)
				buf[pos] = c;
			break;
		case 1: /* insert */
			if(len < cap) {
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = c;
				len++;
			}
			break;
		case 2: /* delete */
			if(len) {
				memmove(buf + pos, buf + pos + 1, len - pos - 1);
				len--;
			}
			break;
		default: /* truncate */
			len = pos;
		}
	}
	return len;
}

int
main(int argc, char * argv[])
{
	void (*fn)(const char *, int) = NULL;
	unsigned long inputs = 0;
	int i, first = 2;

	if(argc < 3) {
		fprintf(stderr, "usage: %s xml|http|ssdpd FILE... | "
		        "mutate SEED ROUNDS FILE...\n", argv[0]);
		return 2;
	}
	if(strcmp(argv[1], "xml") == 0)
		fn = run_xml;
	else if(strcmp(argv[1], "http") == 0)
		fn = run_http;
	else if(strcmp(argv[1], "ssdpd") == 0)
		fn = run_ssdpd;
	else if(strcmp(argv[1], "mutate") == 0 && argc >= 5) {
		unsigned long r, rounds = strtoul(argv[3], NULL, 10);
		int nfiles = argc - 4, cap = 0;
		char ** docs = calloc(nfiles, sizeof(char *));
		int * lens = calloc(nfiles, sizeof(int));
		char * work;
		rng = strtoull(argv[2], NULL, 10) | 1;
		for(i = 0; i < nfiles; i++) {
			docs[i] = slurp(argv[4 + i], &lens[i]);
			if(lens[i] > cap)
				cap = lens[i];
		}
		cap += 64;
		work = malloc(cap);
		for(r = 0; r < rounds; r++) {
			int which = next_random() % nfiles;
			int len = lens[which];
			memcpy(work, docs[which], len);
			len = mutate(work, len, cap);
			exact(run_xml, work, len);
			exact(run_http, work, len);
			inputs += 2;
		}
		for(i = 0; i < nfiles; i++)
			free(docs[i]);
		free(docs);
		free(lens);
		free(work);
		printf("ok %lu inputs\n", inputs);
		return 0;
	}
	if(!fn) {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	for(i = first; i < argc; i++) {
		int len, k;
		char * doc = slurp(argv[i], &len);
		for(k = 0; k <= len; k++) {
			exact(fn, doc, k);
			inputs++;
		}
		free(doc);
	}
	printf("ok %lu inputs\n", inputs);
	return 0;
}
