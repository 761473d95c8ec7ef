/* keys: key objects and passphrases (format and rules in keys.h).
 * Limits: a key object is at most KEYS_OBJECT_MAX bytes; a passphrase at most 64 KiB; opening
 * tries every key object in turn, one scrypt each (at the default cost 0.53 s as the README's
 * performance table measured it; 0.9 to 2.2 s measured on a loaded 2-core machine), so a
 * repository with many keys opens more slowly with the last one's passphrase.
 * Threading: no shared state (getpwuid_r, gethostname); password_command runs in a child process
 * and is waited for. */
#include "backend/repo/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/json.h"

#define WRAPPED_BYTES (CRYPT_MASTER_BYTES + CRYPT_TAG_BYTES)
#define FIELD_MAX 255
#define PASS_MAX (64u << 10)
static const char KEY_AD[] = "dvsnap-key-v1";

extern char **environ;

bool keys_id_ok(const char *id)
{
    if (!id || strlen(id) != KEYS_ID_HEX)
        return false;
    for (int i = 0; i < KEYS_ID_HEX; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

/* Every clear field, NUL-separated: what the wrapped key is bound to. */
static int key_ad(const char *repo_id, const struct key_info *info, struct buf *ad)
{
    buf_reset(ad);
    int rc = buf_add(ad, KEY_AD, sizeof KEY_AD);
    const char *f[] = {repo_id, info->id, info->created, info->host, info->user, "scrypt"};
    for (size_t i = 0; !rc && i < sizeof f / sizeof f[0]; i++)
        rc = buf_add(ad, f[i], strlen(f[i]) + 1);
    return rc ? rc : buf_printf(ad, "%d %d %d", info->log2n, 8, 1);
}

int key_object_render(const struct crypt *c, const char *repo_id, const struct key_info *info,
                      const void *pass, size_t pass_len, struct buf *out, struct dverr *err)
{
    unsigned char salt[CRYPT_SALT_BYTES], kek[32], master[CRYPT_MASTER_BYTES],
        wrapped[WRAPPED_BYTES];
    struct buf ad = BUF_INIT;
    struct crypt_obj *o = NULL;
    int rc = crypt_random(salt, sizeof salt);
    if (rc) {
        rc = dverr_set(err, rc, "no random bytes from the system");
        goto out;
    }
    if ((rc = crypt_scrypt(pass, pass_len, salt, sizeof salt, info->log2n, 8, 1, kek))) {
        rc = dverr_set(err, rc, "deriving a key from the passphrase: %s", strerror(-rc));
        goto out;
    }
    crypt_master(c, master);
    if ((rc = key_ad(repo_id, info, &ad)) || (rc = crypt_obj_from_key(kek, &o)) ||
        (rc = crypt_obj_seal(o, 0, true, ad.data, ad.len, master, sizeof master, wrapped))) {
        rc = dverr_set(err, rc, "sealing the key: %s", strerror(-rc));
        goto out;
    }
    rc = buf_printf(out, "{\"kind\":\"dvsnap-key\",\"version\":1,\"repository\":");
    if (!rc)
        rc = buf_add_json_string(out, repo_id, strlen(repo_id));
    if (!rc)
        rc = buf_printf(out, ",\"id\":\"%s\",\"created\":", info->id);
    if (!rc)
        rc = buf_add_json_string(out, info->created, strlen(info->created));
    if (!rc && !(rc = buf_addstr(out, ",\"host\":")))
        rc = buf_add_json_string(out, info->host, strlen(info->host));
    if (!rc && !(rc = buf_addstr(out, ",\"user\":")))
        rc = buf_add_json_string(out, info->user, strlen(info->user));
    if (!rc)
        rc = buf_printf(out, ",\"kdf\":\"scrypt\",\"log2n\":%d,\"r\":8,\"p\":1,\"salt\":\"",
                        info->log2n);
    if (!rc && !(rc = base64_encode(salt, sizeof salt, out)) &&
        !(rc = buf_addstr(out, "\",\"key\":\"")) &&
        !(rc = base64_encode(wrapped, sizeof wrapped, out)))
        rc = buf_addstr(out, "\"}\n");
    if (rc)
        rc = dverr_set(err, rc, "out of memory");
out:
    explicit_bzero(kek, sizeof kek);
    explicit_bzero(master, sizeof master);
    crypt_obj_free(o);
    buf_release(&ad);
    return rc;
}

/* A string member of at most FIELD_MAX bytes without NUL into out. */
static bool get_field(const struct json_node *root, const char *key, char *out, size_t n)
{
    const struct json_node *v = json_get(root, key);
    if (!v || v->type != JSON_STRING || v->str_len > FIELD_MAX || v->str_len >= n ||
        memchr(v->str, '\0', v->str_len))
        return false;
    memcpy(out, v->str, v->str_len + 1);
    return true;
}

static bool get_int(const struct json_node *root, const char *key, int lo, int hi, int *out)
{
    const struct json_node *v = json_get(root, key);
    if (!v || v->type != JSON_NUMBER)
        return false;
    char *end = NULL;
    long x = strtol(v->str, &end, 10);
    if (!end || *end || x < lo || x > hi)
        return false;
    *out = (int)x;
    return true;
}

/* The bytes of a base64 member, exactly n of them. */
static bool get_b64(const struct json_node *root, const char *key, unsigned char *out, size_t n)
{
    const struct json_node *v = json_get(root, key);
    struct buf b = BUF_INIT;
    bool ok = v && v->type == JSON_STRING && v->str_len < 4 * n && !base64_decode(v->str,
                                                                                  v->str_len, &b) &&
              b.len == n;
    if (ok)
        memcpy(out, b.data, n);
    buf_release(&b);
    return ok;
}

struct parsed_key {
    struct key_info info;
    char repository[FIELD_MAX + 1];
    unsigned char salt[CRYPT_SALT_BYTES], wrapped[WRAPPED_BYTES];
};

static int key_parse(const char *json, size_t len, struct parsed_key *k, struct dverr *err)
{
    struct json_doc *doc = NULL;
    struct json_limits lim = {.max_depth = 4, .max_string = 4096, .max_nodes = 64};
    memset(k, 0, sizeof *k);
    if (len > KEYS_OBJECT_MAX || json_parse(json, len, &lim, &doc, NULL))
        return dverr_set(err, -EIO, "a key object is not valid JSON");
    const struct json_node *root = json_root(doc);
    const char *kind = root && root->type == JSON_OBJECT ? json_get_str(root, "kind") : NULL;
    const char *kdf = kind ? json_get_str(root, "kdf") : NULL;
    int version = 0, r = 0, p = 0;
    bool ok = kind && !strcmp(kind, "dvsnap-key") && get_int(root, "version", 1, 1, &version) &&
              get_field(root, "repository", k->repository, sizeof k->repository) &&
              get_field(root, "id", k->info.id, sizeof k->info.id) && keys_id_ok(k->info.id) &&
              get_field(root, "created", k->info.created, sizeof k->info.created) &&
              get_field(root, "host", k->info.host, sizeof k->info.host) &&
              get_field(root, "user", k->info.user, sizeof k->info.user) && kdf &&
              !strcmp(kdf, "scrypt") && get_int(root, "log2n", 10, 20, &k->info.log2n) &&
              get_int(root, "r", 8, 8, &r) && get_int(root, "p", 1, 1, &p) &&
              get_b64(root, "salt", k->salt, sizeof k->salt) &&
              get_b64(root, "key", k->wrapped, sizeof k->wrapped);
    json_doc_free(doc);
    return ok ? 0 : dverr_set(err, -EIO, "a key object is malformed");
}

int key_object_open(const char *json, size_t len, const char *repo_id, const void *pass,
                    size_t pass_len, struct crypt **out, struct key_info *info,
                    struct dverr *err)
{
    struct parsed_key k;
    unsigned char kek[32], master[CRYPT_MASTER_BYTES];
    struct buf ad = BUF_INIT;
    struct crypt_obj *o = NULL;
    if (out)
        *out = NULL;
    int rc = key_parse(json, len, &k, err);
    if (rc)
        return rc;
    if (strcmp(k.repository, repo_id) != 0)
        return dverr_set(err, -EIO, "key %s belongs to another repository", k.info.id);
    if ((rc = crypt_scrypt(pass, pass_len, k.salt, sizeof k.salt, k.info.log2n, 8, 1, kek))) {
        rc = dverr_set(err, rc, "deriving a key from the passphrase: %s", strerror(-rc));
        goto out;
    }
    if ((rc = key_ad(repo_id, &k.info, &ad)) || (rc = crypt_obj_from_key(kek, &o))) {
        rc = dverr_set(err, rc, "out of memory");
        goto out;
    }
    rc = crypt_obj_open_part(o, 0, true, ad.data, ad.len, k.wrapped, sizeof k.wrapped, master);
    if (rc == -EBADMSG) {
        rc = dverr_set(err, -EACCES, "key %s does not open with this passphrase", k.info.id);
        goto out;
    }
    if (!rc && out)
        rc = crypt_new(master, out);
    if (rc) {
        rc = dverr_set(err, rc, "opening key %s: %s", k.info.id, strerror(-rc));
        goto out;
    }
    if (info)
        *info = k.info;
out:
    explicit_bzero(kek, sizeof kek);
    explicit_bzero(master, sizeof master);
    crypt_obj_free(o);
    buf_release(&ad);
    return rc;
}

/* ---------- the store's key objects ---------- */

static void key_name(const char *id, char out[64])
{
    snprintf(out, 64, "keys/%s", id);
}

static int test_log2n(void)
{
    const char *v = getenv("DVSNAP_TEST_KDF_LOG2N");
    char *end = NULL;
    long x = v && *v ? strtol(v, &end, 10) : 0;
    return end && !*end && x >= 10 && x <= 20 ? (int)x : KEYS_LOG2N_DEFAULT;
}

int keys_add(struct objstore *s, const struct crypt *c, const char *repo_id, const void *pass,
             size_t pass_len, char id[KEYS_ID_HEX + 1], struct dverr *err)
{
    struct key_info info = {.log2n = test_log2n()};
    unsigned char rnd[KEYS_ID_HEX / 2];
    if (crypt_random(rnd, sizeof rnd))
        return dverr_set(err, -EIO, "no random bytes from the system");
    hex_encode(rnd, sizeof rnd, info.id);
    rfc3339_from_time(time(NULL), info.created);
    if (gethostname(info.host, sizeof info.host - 1))
        snprintf(info.host, sizeof info.host, "?");
    info.host[sizeof info.host - 1] = '\0';
    struct passwd pw, *res = NULL;
    char pwbuf[4096];
    if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof pwbuf, &res) == 0 && res)
        snprintf(info.user, sizeof info.user, "%s", res->pw_name);
    else
        snprintf(info.user, sizeof info.user, "uid %u", (unsigned)geteuid());
    struct buf doc = BUF_INIT;
    char name[64];
    int rc = key_object_render(c, repo_id, &info, pass, pass_len, &doc, err);
    key_name(info.id, name);
    if (!rc)
        rc = s->ops->put_if_absent(s->impl, name, doc.data, doc.len, err);
    buf_release(&doc);
    if (!rc)
        memcpy(id, info.id, KEYS_ID_HEX + 1);
    return rc;
}

/* A key object as the listing names it: its id and size (so that it is read with one GET). */
struct key_entry {
    char id[KEYS_ID_HEX + 1]; /* first: the entries sort by it */
    uint64_t size;
};

static int collect_key(void *ctx, const char *name, uint64_t size)
{
    struct buf *entries = ctx;
    if (strncmp(name, "keys/", 5) != 0 || !keys_id_ok(name + 5))
        return 0;
    struct key_entry e = {.size = size};
    memcpy(e.id, name + 5, KEYS_ID_HEX + 1);
    return buf_add(entries, &e, sizeof e);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The store's key objects, sorted by id: n struct key_entry in entries. */
static int key_entries(struct objstore *s, struct buf *entries, size_t *n, struct dverr *err)
{
    int rc = s->ops->list(s->impl, "keys/", collect_key, entries, err);
    if (rc)
        return rc == -ENOMEM ? dverr_set(err, rc, "out of memory") : rc;
    *n = entries->len / sizeof(struct key_entry);
    if (*n)
        qsort(entries->data, *n, sizeof(struct key_entry), cmp_id);
    return 0;
}

/* The key object k into doc: one GET of the size the listing gave (a key object rewritten since
 * reads short: -EIO). */
static int key_get(struct objstore *s, const struct key_entry *k, struct buf *doc,
                   struct dverr *err)
{
    char name[64];
    key_name(k->id, name);
    buf_reset(doc);
    if (k->size > KEYS_OBJECT_MAX)
        return dverr_set(err, -EIO, "key object %s is too large", k->id);
    return s->ops->get(s->impl, name, 0, k->size, doc, err);
}

int keys_unlock(struct objstore *s, const char *repo_id, const void *pass, size_t pass_len,
                struct crypt **out, char id[KEYS_ID_HEX + 1], struct dverr *err)
{
    *out = NULL;
    struct buf ids = BUF_INIT, doc = BUF_INIT;
    size_t n = 0, malformed = 0;
    int rc = key_entries(s, &ids, &n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        const struct key_entry *k = (const struct key_entry *)ids.data + i;
        const char *kid = k->id;
        struct dverr ke = {0};
        int krc = key_get(s, k, &doc, &ke);
        if (krc == -ENOENT)
            continue; /* removed meanwhile */
        if (krc) {
            rc = dverr_set(err, krc, "%s", dverr_msg(&ke));
            break;
        }
        krc = key_object_open(doc.data, doc.len, repo_id, pass, pass_len, out, NULL, &ke);
        if (krc == 0) {
            memcpy(id, kid, KEYS_ID_HEX + 1);
            break;
        }
        if (krc == -EIO)
            malformed++;
        else if (krc != -EACCES) {
            rc = dverr_set(err, krc, "%s", dverr_msg(&ke));
            break;
        }
    }
    if (!rc && !*out) {
        if (n == 0)
            rc = dverr_set(err, -ENOENT, "the repository is encrypted but has no key objects "
                           "(keys/ is empty): it cannot be opened");
        else
            rc = dverr_set(err, -EACCES, "wrong password: none of the repository's %zu key%s "
                           "opens with it%s", n, n == 1 ? "" : "s",
                           malformed ? " (some key objects are malformed)" : "");
    }
    buf_release(&ids);
    buf_release(&doc);
    return rc;
}

static int cmp_created(const void *a, const void *b)
{
    const struct key_info *x = a, *y = b;
    int c = strcmp(x->created, y->created);
    return c ? c : strcmp(x->id, y->id);
}

int keys_list(struct objstore *s, struct key_info **out, size_t *n, struct dverr *err)
{
    *out = NULL;
    *n = 0;
    struct buf ids = BUF_INIT, doc = BUF_INIT;
    size_t m = 0, k = 0;
    struct key_info *v = NULL;
    int rc = key_entries(s, &ids, &m, err);
    if (!rc && !(v = calloc(m ? m : 1, sizeof *v)))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < m; i++) {
        const struct key_entry *ke = (const struct key_entry *)ids.data + i;
        const char *kid = ke->id;
        struct parsed_key pk;
        int krc = key_get(s, ke, &doc, err);
        if (krc == -ENOENT)
            continue;
        if (krc) {
            rc = krc;
            break;
        }
        if (key_parse(doc.data, doc.len, &pk, err) || strcmp(pk.info.id, kid) != 0) {
            rc = dverr_set(err, -EIO, "key object %s is malformed", kid);
            break;
        }
        v[k++] = pk.info;
    }
    buf_release(&ids);
    buf_release(&doc);
    if (rc) {
        free(v);
        return rc;
    }
    qsort(v, k, sizeof *v, cmp_created);
    *out = v;
    *n = k;
    return 0;
}

int keys_remove(struct objstore *s, const char *id, struct dverr *err)
{
    char name[64];
    if (!keys_id_ok(id))
        return dverr_set(err, -ENOENT, "no key \"%.40s\"", id);
    key_name(id, name);
    int rc = s->ops->del(s->impl, name, err);
    return rc == -ENOENT ? dverr_set(err, rc, "no key %s", id) : rc;
}

/* ---------- passphrases ---------- */

void keys_passphrase_release(struct buf *b)
{
    buf_release_secret(b);
}

bool keys_passphrase_configured(const struct config *cfg)
{
    return (cfg->password_file && *cfg->password_file) ||
           (cfg->password_command && *cfg->password_command);
}

int keys_passphrase_file(const char *path, struct buf *out, struct dverr *err)
{
    struct dverr e = {0};
    int rc = config_read_secret_file(path, out, &e);
    return rc ? dverr_set(err, rc, "password_file: %s", dverr_msg(&e)) : 0;
}

static void strip_newline(struct buf *b)
{
    if (b->len && b->data[b->len - 1] == '\n')
        b->data[--b->len] = '\0';
    if (b->len && b->data[b->len - 1] == '\r')
        b->data[--b->len] = '\0';
}

/* Run cmd with /bin/sh -c; its standard output (at most PASS_MAX bytes) is the passphrase. */
static int passphrase_command(const char *cmd, struct buf *out, struct dverr *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return dverr_set(err, -errno, "password_command: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return dverr_set(err, -rc, "password_command: cannot run /bin/sh: %s", strerror(rc));
    }
    char chunk[4096];
    int e = buf_reserve(out, PASS_MAX + 1);
    for (;;) {
        ssize_t n = read(fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (!e && out->len + (size_t)n > PASS_MAX)
            e = -EFBIG;
        if (!e)
            e = buf_add(out, chunk, (size_t)n);
    }
    explicit_bzero(chunk, sizeof chunk);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (e)
        return dverr_set(err, e, "password_command: %s", e == -EFBIG ? "its output is larger "
                         "than 64 KiB" : "out of memory");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return dverr_set(err, -EPERM, "password_command failed (%s %d)",
                         WIFEXITED(status) ? "exit status" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    strip_newline(out);
    if (out->len == 0)
        return dverr_set(err, -EINVAL, "password_command printed an empty password");
    return 0;
}

/* Read one line from the terminal with echo off. -ENOKEY when there is no terminal. */
static int tty_read(const char *prompt, struct buf *out, struct dverr *err)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -ENOKEY;
    struct termios old, quiet;
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    int rc = 0;
    if (write(fd, prompt, strlen(prompt)) < 0)
        rc = -errno;
    char c;
    if (!rc)
        rc = buf_reserve(out, 1024);
    while (!rc) {
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == '\n')
            break;
        if (out->len >= PASS_MAX)
            rc = -EFBIG;
        else
            rc = buf_add(out, &c, 1);
    }
    c = 0;
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0 && !rc)
        rc = -errno;
    close(fd);
    if (rc)
        return dverr_set(err, rc, "reading the password: %s", strerror(-rc));
    strip_newline(out);
    return out->len ? 0 : dverr_set(err, -EINVAL, "empty password");
}

int keys_passphrase(const struct config *cfg, const char *prompt, struct buf *out,
                    struct dverr *err)
{
    bool file = cfg->password_file && *cfg->password_file;
    bool cmd = cfg->password_command && *cfg->password_command;
    if (file && cmd)
        return dverr_set(err, -EINVAL, "both password_file and password_command are set: set one");
    if (cmd)
        return passphrase_command(cfg->password_command, out, err);
    if (file)
        return keys_passphrase_file(cfg->password_file, out, err);
    int rc = tty_read(prompt, out, err);
    if (rc == -ENOKEY)
        return dverr_set(err, rc, "the repository is encrypted and no password is configured: "
                         "set password_file (or DVSNAP_PASSWORD_FILE) or password_command");
    return rc;
}

int keys_passphrase_new_tty(struct buf *out, struct dverr *err)
{
    struct buf again = BUF_INIT;
    int rc = tty_read("new password: ", out, err);
    if (rc == -ENOKEY)
        return rc; /* the caller says where else a password can come from */
    if (!rc)
        rc = tty_read("the new password again: ", &again, err);
    if (!rc && (again.len != out->len || memcmp(again.data, out->data, out->len) != 0))
        rc = dverr_set(err, -EINVAL, "the two passwords differ");
    keys_passphrase_release(&again);
    if (rc)
        keys_passphrase_release(out);
    return rc;
}
