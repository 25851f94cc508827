/*
 * What natfwd._miniupnpc exposes of miniupnpc, as cffi declarations.
 *
 * This is not miniupnpc's header: it declares only what natfwd calls, in the
 * form cffi's API mode checks against the real headers at build time. Fields
 * and lengths written "..." are filled in by the C compiler, so the binding
 * follows the library it is built against.
 *
 * Calls whose shape changed between miniupnpc API versions 17 and 21 are not
 * declared directly; the natfwd_* shims in miniupnpc_shim.c stand in for them
 * and give one shape and one set of result codes whatever the version.
 */

#define UPNPCOMMAND_SUCCESS ...
#define UPNPCOMMAND_UNKNOWN_ERROR ...
#define UPNPCOMMAND_INVALID_ARGS ...
#define UPNPCOMMAND_HTTP_ERROR ...
#define UPNPCOMMAND_INVALID_RESPONSE ...
#define UPNPCOMMAND_MEM_ALLOC_ERROR ...

#define UPNPDISCOVER_SUCCESS ...
#define UPNPDISCOVER_UNKNOWN_ERROR ...
#define UPNPDISCOVER_SOCKET_ERROR ...
#define UPNPDISCOVER_MEMORY_ERROR ...

#define MINIUPNPC_URL_MAXSIZE ...

struct UPNPDev {
    struct UPNPDev *pNext;
    char *descURL;
    char *st;
    char *usn;
    unsigned int scope_id;
    ...;
};

struct IGDdatas_service {
    char controlurl[...];
    char servicetype[...];
    ...;
};

struct IGDdatas {
    char urlbase[...];
    struct IGDdatas_service CIF;
    struct IGDdatas_service first;
    struct IGDdatas_service second;
    struct IGDdatas_service IPv6FC;
    ...;
};

struct UPNPUrls {
    char *controlURL;
    char *ipcondescURL;
    char *controlURL_CIF;
    char *controlURL_6FC;
    char *rootdescURL;
    ...;
};

/* Discovery */

struct UPNPDev *upnpDiscoverDevices(const char *const deviceTypes[], int delay,
                                    const char *multicastif,
                                    const char *minissdpdsock, int localport,
                                    int ipv6, unsigned char ttl, int *error,
                                    int searchalltypes);
void freeUPNPDevlist(struct UPNPDev *devlist);

int UPNP_GetIGDFromUrl(const char *rootdescurl, struct UPNPUrls *urls,
                       struct IGDdatas *data, char *lanaddr, int lanaddrlen);
void FreeUPNPUrls(struct UPNPUrls *urls);

/* IGD actions whose shape is the same in API 17 to 21 */

int UPNP_GetStatusInfo(const char *controlURL, const char *servicetype,
                       char *status, unsigned int *uptime,
                       char *lastconnerror);
int UPNP_GetConnectionTypeInfo(const char *controlURL,
                               const char *servicetype, char *connectionType);
int UPNP_GetExternalIPAddress(const char *controlURL, const char *servicetype,
                              char *extIpAdd);
int UPNP_AddPortMapping(const char *controlURL, const char *servicetype,
                        const char *extPort, const char *inPort,
                        const char *inClient, const char *desc,
                        const char *proto, const char *remoteHost,
                        const char *leaseDuration);
int UPNP_AddAnyPortMapping(const char *controlURL, const char *servicetype,
                           const char *extPort, const char *inPort,
                           const char *inClient, const char *desc,
                           const char *proto, const char *remoteHost,
                           const char *leaseDuration, char *reservedPort);
int UPNP_DeletePortMapping(const char *controlURL, const char *servicetype,
                           const char *extPort, const char *proto,
                           const char *remoteHost);
int UPNP_GetPortMappingNumberOfEntries(const char *controlURL,
                                       const char *servicetype,
                                       unsigned int *numEntries);

/* Shims (miniupnpc_shim.c) */

#define NATFWD_IGD_NONE ...
#define NATFWD_IGD_CONNECTED ...
#define NATFWD_IGD_PRIVATE_WAN ...
#define NATFWD_IGD_DISCONNECTED ...
#define NATFWD_IGD_NOT_IGD ...

/* Sizes of the text buffers the IGD actions write into. */
#define NATFWD_ADDR_LEN ...
#define NATFWD_PORT_LEN ...
#define NATFWD_SHORT_LEN ...
#define NATFWD_DESC_LEN ...

int natfwd_get_valid_igd(struct UPNPDev *devlist, struct UPNPUrls *urls,
                         struct IGDdatas *data, char *lanaddr, int lanaddrlen,
                         char *wanaddr, int wanaddrlen);

int natfwd_get_specific_entry(const char *controlURL, const char *servicetype,
                              const char *extPort, const char *proto,
                              const char *remoteHost, char *intClient,
                              char *intPort, char *desc, size_t desclen,
                              char *enabled, char *leaseDuration);

int natfwd_get_generic_entry(const char *controlURL, const char *servicetype,
                             const char *index, char *extPort,
                             char *intClient, char *intPort, char *protocol,
                             char *desc, size_t desclen, char *enabled,
                             char *rHost, size_t rHostlen, char *duration);

const char *strupnperror(int err);

/* What this module was built from (see natfwd._bindings). */
const char *natfwd_library_version(void);
int natfwd_library_api_version(void);
const char *natfwd_library_origin(void);
const char *natfwd_package_version(void);
