/*
 * Shims for natfwd._natpmp: read the parts of a libnatpmp reply that sit in
 * a union, and give the retry timeout as one number.
 */

#include <stddef.h>

#include "natpmp.h"

#ifndef NATFWD_PACKAGE_VERSION
#error "NATFWD_PACKAGE_VERSION must be defined by the build"
#endif
#ifndef NATFWD_LIBRARY_VERSION
#define NATFWD_LIBRARY_VERSION "unknown"
#endif
#ifndef NATFWD_LIBRARY_ORIGIN
#define NATFWD_LIBRARY_ORIGIN "unknown"
#endif

#if defined(NATPMP_ERR_MALFORMEDRESPONSE)
#define NATFWD_NATPMP_ERR_MALFORMED NATPMP_ERR_MALFORMEDRESPONSE
#else
/* Outside every code libnatpmp uses, so it is never reported. */
#define NATFWD_NATPMP_ERR_MALFORMED (-1000)
#endif

static int
natfwd_natpmp_timeout_ms(natpmp_t *p, long *milliseconds)
{
    struct timeval tv;
    int r = getnatpmprequesttimeout(p, &tv);

    if (r < 0)
        return r;
    /* Rounded up: a caller that sleeps this long must find the retry due,
     * not wake a fraction of a millisecond early and poll until it is. */
    if (tv.tv_sec < 0)
        *milliseconds = 0;
    else
        *milliseconds = (long)tv.tv_sec * 1000L
                        + (long)((tv.tv_usec + 999) / 1000);
    return 0;
}

static uint32_t
natfwd_natpmp_public_address(const natpmpresp_t *response)
{
    return (uint32_t)response->pnu.publicaddress.addr.s_addr;
}

static void
natfwd_natpmp_mapping(const natpmpresp_t *response, uint16_t *privateport,
                      uint16_t *publicport, uint32_t *lifetime)
{
    *privateport = response->pnu.newportmapping.privateport;
    *publicport = response->pnu.newportmapping.mappedpublicport;
    *lifetime = response->pnu.newportmapping.lifetime;
}

static const char *
natfwd_library_version(void)
{
    return NATFWD_LIBRARY_VERSION;
}

static const char *
natfwd_library_origin(void)
{
    return NATFWD_LIBRARY_ORIGIN;
}

static const char *
natfwd_package_version(void)
{
    return NATFWD_PACKAGE_VERSION;
}
