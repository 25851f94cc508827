/* Fetch a URL with miniwget() and print the status line, then the body as
 * the library returned it:
 *
 *   miniupnpc_wget URL
 */
#include <stdio.h>
#include <stdlib.h>

#include "miniwget.h"

int
main(int argc, char * argv[])
{
	int size = 0, status = 0;
	char * body;

	if(argc != 2) {
		fprintf(stderr, "usage: %s URL\n", argv[0]);
		return 2;
	}
	body = miniwget(argv[1], &size, 0, &status);
	printf("status=%d size=%d\n", status, size);
	if(body)
		fwrite(body, 1, size, stdout);
	free(body);
	return 0;
}
