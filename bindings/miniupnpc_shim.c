/*
 * Version shims for natfwd._miniupnpc.
 *
 * natfwd builds against its own miniupnpc fork (API 21) or against the
 * system's library, which may be as old as API 17. The few calls whose
 * prototype or result codes changed in between are wrapped here, keyed on
 * MINIUPNPC_API_VERSION, so that Python sees one shape and never compares
 * raw result integers that mean different things in different versions.
 */

#include <stddef.h>
#include <string.h>

#include "miniupnpc.h"
#include "upnpcommands.h"
#include "upnperrors.h"

#if !defined(MINIUPNPC_API_VERSION) || MINIUPNPC_API_VERSION < 17
#error "natfwd needs miniupnpc API version 17 or later"
#endif

#ifndef NATFWD_PACKAGE_VERSION
#error "NATFWD_PACKAGE_VERSION must be defined by the build"
#endif
#ifndef NATFWD_LIBRARY_ORIGIN
#define NATFWD_LIBRARY_ORIGIN "unknown"
#endif

/* Our classification of what UPNP_GetValidIGD() found. */
#define NATFWD_IGD_NONE 0
#define NATFWD_IGD_CONNECTED 1
#define NATFWD_IGD_PRIVATE_WAN 2
#define NATFWD_IGD_DISCONNECTED 3
#define NATFWD_IGD_NOT_IGD 4

/* Room for what the IGD actions write: an IPv6 address in text, a port
 * number, a short token (protocol, "1", a lease duration) and a mapping
 * description. */
#define NATFWD_ADDR_LEN 64
#define NATFWD_PORT_LEN 8
#define NATFWD_SHORT_LEN 64
#define NATFWD_DESC_LEN 1024

/* miniupnpc before API 21 writes at most this much of a description. */
#define NATFWD_LEGACY_DESC_LEN 80

static int
natfwd_get_valid_igd(struct UPNPDev *devlist, struct UPNPUrls *urls,
                     struct IGDdatas *data, char *lanaddr, int lanaddrlen,
                     char *wanaddr, int wanaddrlen)
{
#if MINIUPNPC_API_VERSION >= 18
    int r = UPNP_GetValidIGD(devlist, urls, data, lanaddr, lanaddrlen,
                             wanaddr, wanaddrlen);
    switch (r) {
    case UPNP_CONNECTED_IGD: return NATFWD_IGD_CONNECTED;
    case UPNP_PRIVATEIP_IGD: return NATFWD_IGD_PRIVATE_WAN;
    case UPNP_DISCONNECTED_IGD: return NATFWD_IGD_DISCONNECTED;
    case UPNP_UNKNOWN_DEVICE: return NATFWD_IGD_NOT_IGD;
    case UPNP_NO_IGD: return NATFWD_IGD_NONE;
    default: return r < 0 ? r : NATFWD_IGD_NONE;
    }
#else
    /* API 17 reports 1 connected, 2 disconnected, 3 another UPnP device,
     * and knows nothing of the WAN address. */
    int r = UPNP_GetValidIGD(devlist, urls, data, lanaddr, lanaddrlen);
    if (wanaddr != NULL && wanaddrlen > 0)
        wanaddr[0] = '\0';
    switch (r) {
    case 1: return NATFWD_IGD_CONNECTED;
    case 2: return NATFWD_IGD_DISCONNECTED;
    case 3: return NATFWD_IGD_NOT_IGD;
    case 0: return NATFWD_IGD_NONE;
    default: return r < 0 ? r : NATFWD_IGD_NONE;
    }
#endif
}

static int
natfwd_get_specific_entry(const char *controlURL, const char *servicetype,
                          const char *extPort, const char *proto,
                          const char *remoteHost, char *intClient,
                          char *intPort, char *desc, size_t desclen,
                          char *enabled, char *leaseDuration)
{
#if MINIUPNPC_API_VERSION >= 21
    return UPNP_GetSpecificPortMappingEntryExt(
        controlURL, servicetype, extPort, proto, remoteHost, intClient,
        intPort, desc, desclen, enabled, leaseDuration);
#else
    char legacy[NATFWD_LEGACY_DESC_LEN];
    int r;

    if (desclen == 0)
        return UPNPCOMMAND_INVALID_ARGS;
    legacy[0] = '\0';
    r = UPNP_GetSpecificPortMappingEntry(
        controlURL, servicetype, extPort, proto, remoteHost, intClient,
        intPort, legacy, enabled, leaseDuration);
    legacy[sizeof(legacy) - 1] = '\0';
    strncpy(desc, legacy, desclen - 1);
    desc[desclen - 1] = '\0';
    return r;
#endif
}

static int
natfwd_get_generic_entry(const char *controlURL, const char *servicetype,
                         const char *index, char *extPort, char *intClient,
                         char *intPort, char *protocol, char *desc,
                         size_t desclen, char *enabled, char *rHost,
                         size_t rHostlen, char *duration)
{
#if MINIUPNPC_API_VERSION >= 21
    return UPNP_GetGenericPortMappingEntryExt(
        controlURL, servicetype, index, extPort, intClient, intPort,
        protocol, desc, desclen, enabled, rHost, rHostlen, duration);
#else
    char legacy_desc[NATFWD_LEGACY_DESC_LEN];
    char legacy_host[64];
    int r;

    if (desclen == 0 || rHostlen == 0)
        return UPNPCOMMAND_INVALID_ARGS;
    legacy_desc[0] = legacy_host[0] = '\0';
    r = UPNP_GetGenericPortMappingEntry(
        controlURL, servicetype, index, extPort, intClient, intPort,
        protocol, legacy_desc, enabled, legacy_host, duration);
    legacy_desc[sizeof(legacy_desc) - 1] = '\0';
    legacy_host[sizeof(legacy_host) - 1] = '\0';
    strncpy(desc, legacy_desc, desclen - 1);
    desc[desclen - 1] = '\0';
    strncpy(rHost, legacy_host, rHostlen - 1);
    rHost[rHostlen - 1] = '\0';
    return r;
#endif
}

static const char *
natfwd_library_version(void)
{
    return MINIUPNPC_VERSION;
}

static int
natfwd_library_api_version(void)
{
    return MINIUPNPC_API_VERSION;
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
