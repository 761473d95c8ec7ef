/* auth: OAuth2 tokens, one per resource, cached and refreshed before expiry; and AWS
 * instance-profile credentials.
 *
 * Three ways to get a token (auth_options.grant):
 *   - client credentials with a secret (Dataverse and the admin API): POST token_url with scope
 *     "<resource>/.default";
 *   - Azure managed identity: GET token_url?api-version=2018-02-01&resource=<resource>
 *     [&client_id=ID] with "Metadata: true" (the instance metadata service,
 *     http://169.254.169.254/metadata/identity/oauth2/token on a VM);
 *   - Azure workload identity: client credentials where the credential is a federated token
 *     (client_assertion, jwt-bearer) read from assertion_file at every request, since the
 *     platform rotates it (AZURE_FEDERATED_TOKEN_FILE on AKS).
 * resource: the admin API root, an environment's instanceApiUrl, https://storage.azure.com,
 * without a trailing slash. A token is cached until a margin before expires_in runs out (a
 * quarter of the lifetime, at most 5 minutes), then fetched again.
 * Only one thread fetches a given resource at a time; the others wait for its result. No lock is
 * held during HTTP. The secret, the federated token and the tokens are never logged or put into
 * error messages; the secret's memory is wiped on auth_free.
 *
 * AWS instance profile (auth_aws_instance_credentials): IMDSv2 at endpoint
 * (http://169.254.169.254 on EC2): PUT /latest/api/token for a session token, GET
 * /latest/meta-data/iam/security-credentials/ for the role's name, then GET .../<role> for
 * AccessKeyId, SecretAccessKey, Token and Expiration. The caller caches them until shortly before
 * Expiration.
 * Threading: every function is thread-safe. */
#ifndef DVSNAP_AUTH_H
#define DVSNAP_AUTH_H

#include <stddef.h>
#include <time.h>

#include "backend/net/http.h"
#include "backend/base/util.h"

struct auth;

enum auth_grant { AUTH_CLIENT_SECRET = 0, AUTH_MANAGED_IDENTITY, AUTH_CLIENT_ASSERTION };

struct auth_options {
    enum auth_grant grant;            /* default: client credentials with a secret */
    const char *token_url;            /* copied; managed identity: the metadata endpoint */
    const char *client_id;            /* copied; optional for a managed identity (user-assigned) */
    const char *secret;               /* AUTH_CLIENT_SECRET: copied into memory wiped on free */
    size_t secret_len;
    const char *assertion_file;       /* AUTH_CLIENT_ASSERTION: copied; read at every request */
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

struct aws_credentials {
    char *access_key_id, *secret_access_key, *session_token; /* wiped on release */
    time_t expires_at;                                      /* 0: not said */
};
/* Instance-profile credentials from the instance metadata service at endpoint (no trailing '/').
 * retry may be NULL. -EACCES when the service refuses or has no role, -EPROTO for a malformed
 * answer, transport errors as http.h. */
int auth_aws_instance_credentials(struct http_transport *t, const struct http_retry *retry,
                                  const char *endpoint, struct aws_credentials *out,
                                  struct dverr *err);
void aws_credentials_release(struct aws_credentials *c);

#endif
