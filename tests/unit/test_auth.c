/* test_auth: the token sources other than a client secret, through a fake HTTP transport that
 * records every request and answers from a script: Azure managed identity (the instance metadata
 * protocol: GET with api-version, resource, client_id and "Metadata: true"; expires_in as a
 * string; the token cached), workload identity (the federated token read from its file at every
 * request, so a rotated file is used), AWS instance-profile credentials (IMDSv2: the PUT for a
 * session token, the role, then the credentials, each carrying the session token), and refusals.
 * Also the instance-metadata address rule (util.h). Single-threaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/net/auth.h"

struct answer {
    long status;
    const char *body;
};

struct seen {
    char method[8];
    char url[512];
    char headers[512]; /* "Name: value\n" lines */
    char body[2048];
};

struct fake {
    const struct answer *answers;
    int n, next;
    struct seen seen[16];
};

static int fake_perform(void *impl, const struct http_request *req, struct http_response *resp,
                        struct dverr *err)
{
    struct fake *f = impl;
    assert_true(f->next < f->n);
    struct seen *s = &f->seen[f->next];
    snprintf(s->method, sizeof s->method, "%s", req->method);
    snprintf(s->url, sizeof s->url, "%s", req->url);
    s->headers[0] = '\0';
    for (const char *const *h = req->headers; h && *h; h++) {
        size_t n = strlen(s->headers);
        snprintf(s->headers + n, sizeof s->headers - n, "%s\n", *h);
    }
    snprintf(s->body, sizeof s->body, "%.*s", (int)req->body_len,
             req->body ? (const char *)req->body : "");
    const struct answer *a = &f->answers[f->next++];
    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    resp->status = a->status;
    buf_addstr(&resp->body, a->body);
    return 0;
}

static void fake_free(void *impl) { (void)impl; }
static const struct http_transport_ops fake_ops = {fake_perform, fake_free};
static const struct http_retry no_retry = {.max_attempts = 1};

static void test_managed_identity(void **state)
{
    static const struct answer answers[] = {
        {200, "{\"access_token\":\"mi-token-1\",\"expires_in\":\"3599\","
              "\"resource\":\"https://storage.azure.com\",\"token_type\":\"Bearer\"}"},
        {400, "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}"},
    };
    struct fake f = {.answers = answers, .n = 2};
    struct http_transport t = {&fake_ops, &f};
    struct auth_options o = {
        .grant = AUTH_MANAGED_IDENTITY,
        .token_url = "http://169.254.169.254/metadata/identity/oauth2/token",
        .client_id = "11111111-2222-3333-4444-555555555555",
        .transport = &t,
        .retry = &no_retry,
    };
    struct auth *a = NULL;
    struct buf tok = BUF_INIT;
    struct dverr err = {0};
    assert_int_equal(auth_new(&o, &a, &err), 0);
    assert_int_equal(auth_token(a, "https://storage.azure.com", &tok, &err), 0);
    assert_string_equal(tok.data, "mi-token-1");
    assert_string_equal(f.seen[0].method, "GET");
    assert_string_equal(f.seen[0].url,
                        "http://169.254.169.254/metadata/identity/oauth2/token?api-version="
                        "2018-02-01&resource=https%3A%2F%2Fstorage.azure.com&client_id="
                        "11111111-2222-3333-4444-555555555555");
    assert_non_null(strstr(f.seen[0].headers, "Metadata: true\n"));
    assert_string_equal(f.seen[0].body, "");
    /* cached: a string expires_in of an hour */
    assert_int_equal(auth_token(a, "https://storage.azure.com", &tok, &err), 0);
    assert_int_equal(f.next, 1);
    assert_int_equal(auth_fetch_count(a), 1);
    /* another resource: a refusal names the error, never a token */
    assert_int_equal(auth_token(a, "https://other.example", &tok, &err), -EACCES);
    assert_non_null(strstr(dverr_msg(&err), "Identity not found"));
    buf_release(&tok);
    auth_free(a);

    /* without a client id (the system-assigned identity) none is sent */
    static const struct answer one[] = {{200, "{\"access_token\":\"t\",\"expires_in\":60}"}};
    struct fake g = {.answers = one, .n = 1};
    struct http_transport t2 = {&fake_ops, &g};
    o.client_id = NULL;
    o.transport = &t2;
    assert_int_equal(auth_new(&o, &a, &err), 0);
    assert_int_equal(auth_token(a, "https://storage.azure.com", &tok, &err), 0);
    assert_null(strstr(g.seen[0].url, "client_id"));
    buf_release(&tok);
    auth_free(a);
}

static void test_workload_identity(void **state)
{
    char file[] = "/tmp/dvsnap-fedtoken.XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "federated.jwt.one\n", 18), 18);
    close(fd);
    static const struct answer answers[] = {
        {200, "{\"access_token\":\"wi-1\",\"expires_in\":1}"},
        {200, "{\"access_token\":\"wi-2\",\"expires_in\":3600}"},
    };
    struct fake f = {.answers = answers, .n = 2};
    struct http_transport t = {&fake_ops, &f};
    struct auth_options o = {
        .grant = AUTH_CLIENT_ASSERTION,
        .token_url = "https://login.example/tenant/oauth2/v2.0/token",
        .client_id = "app-id",
        .assertion_file = file,
        .transport = &t,
        .retry = &no_retry,
    };
    struct auth *a = NULL;
    struct buf tok = BUF_INIT;
    struct dverr err = {0};
    assert_int_equal(auth_new(&o, &a, &err), 0);
    assert_int_equal(auth_token(a, "https://storage.azure.com", &tok, &err), 0);
    assert_string_equal(tok.data, "wi-1");
    assert_string_equal(f.seen[0].method, "POST");
    assert_string_equal(f.seen[0].body,
                        "grant_type=client_credentials&client_id=app-id&scope=https%3A%2F%2F"
                        "storage.azure.com%2F.default&client_assertion_type=urn%3Aietf%3Aparams"
                        "%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion="
                        "federated.jwt.one");
    assert_null(strstr(f.seen[0].body, "client_secret"));
    /* the platform rotated the file; the 1-second token is refreshed with the new one */
    FILE *w = fopen(file, "w");
    assert_non_null(w);
    fputs("federated.jwt.two", w);
    fclose(w);
    usleep(1100 * 1000); /* past the first token's refresh time */
    assert_int_equal(auth_token(a, "https://storage.azure.com", &tok, &err), 0);
    assert_string_equal(tok.data, "wi-2");
    assert_non_null(strstr(f.seen[1].body, "client_assertion=federated.jwt.two"));
    buf_release(&tok);
    auth_free(a);

    /* a missing file is an error that names it */
    unlink(file);
    struct fake g = {.answers = answers, .n = 2};
    struct http_transport t2 = {&fake_ops, &g};
    o.transport = &t2;
    assert_int_equal(auth_new(&o, &a, &err), 0);
    dverr_clear(&err);
    assert_int_equal(auth_token(a, "https://storage.azure.com", &tok, &err), -ENOENT);
    assert_non_null(strstr(dverr_msg(&err), file));
    assert_int_equal(g.next, 0);
    auth_free(a);
    buf_release(&tok);

    /* required settings */
    o.assertion_file = NULL;
    assert_int_equal(auth_new(&o, &a, &err), -EINVAL);
    o.assertion_file = file;
    o.client_id = NULL;
    assert_int_equal(auth_new(&o, &a, &err), -EINVAL);
}

static void test_aws_instance_profile(void **state)
{
    static const struct answer answers[] = {
        {200, "imds-session-token\n"},
        {200, "my-role\n"},
        {200, "{\"Code\":\"Success\",\"LastUpdated\":\"2026-11-21T09:00:00Z\",\"Type\":"
              "\"AWS-HMAC\",\"AccessKeyId\":\"ASIAEXAMPLE\",\"SecretAccessKey\":\"secret/key+1\","
              "\"Token\":\"session-token-xyz\",\"Expiration\":\"2026-11-21T15:00:00Z\"}"},
    };
    struct fake f = {.answers = answers, .n = 3};
    struct http_transport t = {&fake_ops, &f};
    struct aws_credentials c;
    struct dverr err = {0};
    assert_int_equal(auth_aws_instance_credentials(&t, &no_retry, "http://127.0.0.1:9", &c, &err),
                     0);
    assert_string_equal(c.access_key_id, "ASIAEXAMPLE");
    assert_string_equal(c.secret_access_key, "secret/key+1");
    assert_string_equal(c.session_token, "session-token-xyz");
    time_t want;
    assert_int_equal(rfc3339_to_time("2026-11-21T15:00:00Z", &want), 0);
    assert_int_equal(c.expires_at, want);
    assert_string_equal(f.seen[0].method, "PUT");
    assert_string_equal(f.seen[0].url, "http://127.0.0.1:9/latest/api/token");
    assert_non_null(strstr(f.seen[0].headers, "X-aws-ec2-metadata-token-ttl-seconds: 21600"));
    assert_string_equal(f.seen[1].method, "GET");
    assert_string_equal(f.seen[1].url,
                        "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    assert_non_null(strstr(f.seen[1].headers, "X-aws-ec2-metadata-token: imds-session-token"));
    assert_string_equal(f.seen[2].url,
                        "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/my-role");
    assert_non_null(strstr(f.seen[2].headers, "X-aws-ec2-metadata-token: imds-session-token"));
    aws_credentials_release(&c);

    /* no role attached: 404, said so */
    static const struct answer norole[] = {{200, "tok"}, {404, "Not Found"}};
    struct fake g = {.answers = norole, .n = 2};
    struct http_transport t2 = {&fake_ops, &g};
    assert_int_equal(
        auth_aws_instance_credentials(&t2, &no_retry, "http://127.0.0.1:9", &c, &err), -EACCES);
    assert_non_null(strstr(dverr_msg(&err), "instance profile"));
    assert_null(c.access_key_id);

    /* a hostile role name never reaches a URL */
    static const struct answer bad[] = {{200, "tok"}, {200, "../../x"}};
    struct fake h = {.answers = bad, .n = 2};
    struct http_transport t3 = {&fake_ops, &h};
    dverr_clear(&err);
    assert_int_equal(
        auth_aws_instance_credentials(&t3, &no_retry, "http://127.0.0.1:9", &c, &err), -EACCES);
    assert_int_equal(h.next, 2);

    /* a failed Code */
    static const struct answer failed[] = {
        {200, "tok"}, {200, "r"}, {200, "{\"Code\":\"AssumeRoleUnauthorizedAccess\"}"}};
    struct fake k = {.answers = failed, .n = 3};
    struct http_transport t4 = {&fake_ops, &k};
    dverr_clear(&err);
    assert_int_equal(
        auth_aws_instance_credentials(&t4, &no_retry, "http://127.0.0.1:9", &c, &err), -EACCES);
    assert_non_null(strstr(dverr_msg(&err), "AssumeRoleUnauthorizedAccess"));
}

static void test_metadata_address(void **state)
{
    assert_true(url_is_metadata_service("http://169.254.169.254/metadata/identity/oauth2/token"));
    assert_true(url_is_metadata_service("http://169.254.169.254"));
    assert_true(url_is_metadata_service("http://[fd00:ec2::254]/latest/api/token"));
    assert_false(url_is_metadata_service("http://169.254.169.253/"));
    assert_false(url_is_metadata_service("http://169.254.169.254.evil.example/"));
    assert_false(url_is_metadata_service("http://user@169.254.169.254/"));
    assert_false(url_is_metadata_service("ftp://169.254.169.254/"));
    assert_true(url_is_loopback("http://127.0.0.1:8080/x"));
    assert_false(url_is_loopback("http://169.254.169.254/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_managed_identity),
        cmocka_unit_test(test_workload_identity),
        cmocka_unit_test(test_aws_instance_profile),
        cmocka_unit_test(test_metadata_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
