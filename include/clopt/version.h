/* clopt: version macros and the runtime version. */
#ifndef CLOPT_VERSION_H
#define CLOPT_VERSION_H

#include "clopt/export.h"

#define CLOPT_VERSION_MAJOR 0
#define CLOPT_VERSION_MINOR 1
#define CLOPT_VERSION_PATCH 0
#define CLOPT_VERSION_NUMBER \
    (CLOPT_VERSION_MAJOR * 10000 + CLOPT_VERSION_MINOR * 100 + CLOPT_VERSION_PATCH)
#define CLOPT_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's CLOPT_VERSION_NUMBER, to compare with the header a program was built against.
 * Thread-safe. Since v0.1. */
CLOPT_API unsigned clopt_version_number(void);

/* The library's version as "MAJOR.MINOR.PATCH" (static string). Thread-safe. Since v0.1. */
CLOPT_API const char *clopt_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
