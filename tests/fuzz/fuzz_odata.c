/* fuzz_odata: dv_read_table (OData page and delta parsing, nextLink/deltaLink policy) on arbitrary
 * page bodies. A fake transport answers the token request and serves the input as every page, so
 * nextLink loops, foreign links, deleted rows and malformed JSON are all reachable. Checks: no
 * crash or leak, the read ends (a repeated link is refused), a returned delta link stays within
 * the environment's Web API. The client is made once (it needs a 0600 secret file). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/net/http.h"

#define ORG "https://prod.test/org/contoso-prod"
#define TOKEN_URL "https://login.test/t/oauth2/v2.0/token"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *page;
static size_t page_len;
static int pages_served;

static int perform(void *impl, const struct http_request *req, struct http_response *resp,
                   struct dverr *err)
{
    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    if (strcmp(req->url, TOKEN_URL) == 0) {
        resp->status = 200;
        return buf_addstr(&resp->body, "{\"access_token\":\"t\",\"expires_in\":3600}");
    }
    if (++pages_served > 1000)
        abort(); /* the read must end */
    resp->status = 200;
    return buf_add(&resp->body, page, page_len);
}

static void nop_free(void *impl) { (void)impl; }
static const struct http_transport_ops ops = {perform, nop_free};

static int on_record(void *ctx, const struct json_node *r) { return r->type == JSON_OBJECT ? 0 : -1; }
static int on_deleted(void *ctx, const char *id) { return id ? 0 : -1; }

static struct dv_client *client(void)
{
    static struct dv_client *c;
    if (c)
        return c;
    char path[] = "/tmp/dvsnap-fuzz-secret.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, "s\n", 2) != 2)
        abort();
    close(fd);
    struct config cfg = {.admin_url = (char *)"https://admin.test",
                         .token_url = (char *)TOKEN_URL,
                         .client_id = (char *)"fuzz",
                         .client_secret_file = path,
                         .http_retries = 1};
    struct http_transport *t = calloc(1, sizeof(*t));
    t->ops = &ops;
    if (dv_client_new_with_transport(&cfg, t, &c, NULL))
        abort();
    unlink(path);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dv_client *c = client();
    struct dv_env env = {.unique_name = (char *)"contoso-prod", .api_url = (char *)ORG};
    struct dv_table t = {.logical_name = (char *)"account", .entity_set = (char *)"accounts",
                         .primary_id = (char *)"accountid", .change_tracking = size & 1};
    struct dv_read_cb cb = {on_record, on_deleted, NULL};
    page = data;
    page_len = size;
    pages_served = 0;
    char *delta = NULL;
    int rc = dv_read_table(c, &env, &t, NULL, &cb, &delta, NULL, NULL);
    if (rc == 0 && delta && !http_url_within(delta, ORG "/api/data/v9.2/"))
        abort();
    free(delta);
    return 0;
}
