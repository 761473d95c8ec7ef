/* repo_keys: managing the key objects of an encrypted repository (repo.h, `dvsnap key`): list,
 * add, remove, and change the passphrase of the key in use. The format and the passphrase
 * sources are keys.h's; this file adds the rules: never remove the last key nor the one in use,
 * and change a passphrase by adding before removing, each step durable before the next.
 * Threading: like struct repo (the store is thread-safe; nothing here is shared). */
#include "backend/repo/repo_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int need_crypt(struct repo *r, struct dverr *err)
{
    if (!r->crypt)
        return dverr_set(err, -EINVAL, "the repository is not encrypted: it has no keys");
    if (!r->repo_id[0])
        return dverr_set(err, -EINVAL, "the repository was opened without its config");
    return 0;
}

int repo_key_list(struct repo *r, struct key_info **out, size_t *n, size_t *current,
                  struct dverr *err)
{
    *out = NULL;
    *n = 0;
    int rc = need_crypt(r, err);
    if (rc || (rc = keys_list(r->store, out, n, err)))
        return rc;
    *current = *n;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*out)[i].id, r->key_id) == 0)
            *current = i;
    return 0;
}

int repo_key_add(struct repo *r, const void *pass, size_t pass_len, char id[KEYS_ID_HEX + 1],
                 struct dverr *err)
{
    int rc = need_crypt(r, err);
    return rc ? rc : keys_add(r->store, r->crypt, r->repo_id, pass, pass_len, id, err);
}

int repo_key_remove(struct repo *r, const char *id, struct dverr *err)
{
    struct key_info *v = NULL;
    size_t n = 0, current = 0;
    int rc = repo_key_list(r, &v, &n, &current, err);
    if (rc)
        return rc;
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || strcmp(v[i].id, id) == 0;
    free(v);
    if (!found)
        return dverr_set(err, -ENOENT, "no key %.40s in the repository", id);
    if (strcmp(id, r->key_id) == 0)
        return dverr_set(err, -EPERM, "key %s is the one this command opened the repository "
                         "with: use `dvsnap key passwd` to change it, or remove it with another "
                         "key's password", id);
    if (n < 2)
        return dverr_set(err, -EPERM, "key %s is the repository's last key: without it nothing "
                         "could open the repository", id);
    return keys_remove(r->store, id, err);
}

int repo_key_passwd(struct repo *r, const void *pass, size_t pass_len, char id[KEYS_ID_HEX + 1],
                    struct dverr *err)
{
    int rc = need_crypt(r, err);
    if (rc)
        return rc;
    char old[sizeof r->key_id];
    memcpy(old, r->key_id, sizeof old);
    /* 1. the new key object, durable (put_if_absent returns once it is) */
    if ((rc = keys_add(r->store, r->crypt, r->repo_id, pass, pass_len, id, err)))
        return rc;
    /* 2. it opens the repository with the new passphrase, read back from the store */
    struct crypt *check = NULL;
    char opened[KEYS_ID_HEX + 1];
    if ((rc = keys_unlock(r->store, r->repo_id, pass, pass_len, &check, opened, err)))
        return rc;
    unsigned char a[CRYPT_MASTER_BYTES], b[CRYPT_MASTER_BYTES];
    crypt_master(check, a);
    crypt_master(r->crypt, b);
    bool same = memcmp(a, b, sizeof a) == 0;
    explicit_bzero(a, sizeof a);
    explicit_bzero(b, sizeof b);
    crypt_free(check);
    if (!same)
        return dverr_set(err, -EIO, "the new key opens another master key: the old key is kept");
    /* 3. only now the old one goes; the repository is opened with the new key from here on */
    memcpy(r->key_id, id, KEYS_ID_HEX + 1);
    if (old[0] && (rc = keys_remove(r->store, old, err)) && rc != -ENOENT)
        return rc;
    return 0;
}
