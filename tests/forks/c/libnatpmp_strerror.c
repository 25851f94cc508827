/* Prints strnatpmperr() for each code given, one line per code:
 * "<code> <text>". */
#include <stdio.h>
#include <stdlib.h>

#include "natpmp.h"

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		int code = atoi(argv[i]);

		printf("%d %s\n", code, strnatpmperr(code));
	}
	return 0;
}
