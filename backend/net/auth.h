/* auth: OAuth2 client-credentials tokens, one per resource, cached and refreshed before expiry.
 *
 * A token is requested from token_url with scope "<resource>/.default" (resource: the admin API
 * root or an environment's instanceApiUrl, without a trailing slash) and cached until a margin
 * before expires_in runs out (a quarter of the lifetime, at most 5 minutes), then fetched again.
 * Only one thread fetches a given resource at a time; the others wait for its result. No lock is
 * held during HTTP. The secret and the tokens are never logged or put into error messages; the
 * secret's memory is wiped on auth_free.
 * Threading: every function is thread-safe. */
#ifndef DVSNAP_AUTH_H
#define DVSNAP_AUTH_H

#include <stddef.h>

#include "backend/net/http.h"
#include "backend/base/util.h"

struct auth;

struct auth_options {
    const char *token_url;            /* copied */
    const char *client_id;            /* copied */
    const char *secret;               /* copied into memory wiped on free */
    size_t secret_len;
    struct http_transport *transport; /* borrowed: must outlive the auth */
    const struct http_retry *retry;   /* copied (pointers inside borrowed); NULL: defaults */
    struct http_counters *counters;   /* borrowed, may be NULL */
};

int auth_new(const struct auth_options *opts, struct auth **out, struct dverr *err);
void auth_free(struct auth *a); /* accepts NULL */

/* A valid access token for resource, copied into out (reset first). The caller should wipe and
 * release out when done. -EACCES when the identity provider refuses (its error code and
 * description in err), -EPROTO for a malformed answer, transport errors as http.h. */
int auth_token(struct auth *a, const char *resource, struct buf *out, struct dverr *err);
/* Drop the cached token for resource if it is still `token` (after a 401), so the next
 * auth_token fetches a fresh one. */
void auth_invalidate(struct auth *a, const char *resource, const char *token);
/* Number of token requests sent (for tests). */
unsigned long auth_fetch_count(struct auth *a);

#endif
