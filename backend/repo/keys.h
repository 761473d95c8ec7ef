/* keys: the key objects of an encrypted repository (keys/<id>) and the passphrases that open
 * them (issue 16).
 *
 * A key object holds the repository's master key (crypt.h) wrapped by a key derived from one
 * passphrase with scrypt (memory-hard; N = 2^17, r = 8, p = 1 by default: 128 MiB, about 0.4 s
 * on one core). A repository may have any number of them, one per passphrase, all wrapping the
 * same master key; any one opens the repository. The object (JSON):
 *   {"kind":"dvsnap-key","version":1,"repository":R,"id":I,"created":T,"host":H,"user":U,
 *    "kdf":"scrypt","log2n":17,"r":8,"p":1,"salt":"<base64, 32 bytes>",
 *    "key":"<base64: the master key sealed, 64 + 16 bytes>"}
 * The master key is sealed with AES-256-GCM under the derived key (a new salt, hence a new key,
 * for every key object, so one fixed nonce is safe), with every other field as associated data:
 * a key object changed in any field, or copied to another repository or id, does not open.
 * A wrong passphrase is told apart from a damaged object only by the tag, so both read as "does
 * not open"; a malformed object is reported as such.
 *
 * Passphrases come from password_command (its standard output), else password_file (mode 0600 and
 * yours, as the client secret; DVSNAP_PASSWORD_FILE overrides it like any key), else a prompt on
 * the controlling terminal; one trailing newline is dropped.
 * A key object may ask for log2n 10..20 (at most 1 GiB of scrypt memory).
 * DVSNAP_TEST_KDF_LOG2N (tests only) sets the scrypt cost of new key objects (10..20).
 * Threading: no shared state; each call stands alone. */
#ifndef DVSNAP_KEYS_H
#define DVSNAP_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "backend/base/config.h"
#include "backend/base/util.h"
#include "backend/objstore/objstore.h"
#include "backend/repo/crypt.h"

#define KEYS_ID_HEX 32
#define KEYS_OBJECT_MAX (64u << 10)
#define KEYS_LOG2N_DEFAULT 17

struct key_info {
    char id[KEYS_ID_HEX + 1];
    char created[40];
    char host[256];
    char user[256];
    int log2n;
};

/* ---- one key object (pure; fuzzed) ---- */
/* Render a key object that wraps c's master key under pass. */
int key_object_render(const struct crypt *c, const char *repo_id, const struct key_info *info,
                      const void *pass, size_t pass_len, struct buf *out, struct dverr *err);
/* Open a key object with pass: *out (may be NULL to check only) and *info. -EACCES when it does
 * not open (wrong passphrase, or changed), -EIO when malformed, -ENOMEM. */
int key_object_open(const char *json, size_t len, const char *repo_id, const void *pass,
                    size_t pass_len, struct crypt **out, struct key_info *info,
                    struct dverr *err);

/* ---- the key objects of a store ---- */
/* Write a new key object for c's master key under pass (put_if_absent, durable); id receives its
 * id. */
int keys_add(struct objstore *s, const struct crypt *c, const char *repo_id, const void *pass,
             size_t pass_len, char id[KEYS_ID_HEX + 1], struct dverr *err);
/* Open the repository's master key with pass, trying each key object: *out, and the id of the key
 * that opened it. -EACCES (wrong passphrase: no key object opens with it), -ENOENT (no key
 * objects), or the store's error. */
int keys_unlock(struct objstore *s, const char *repo_id, const void *pass, size_t pass_len,
                struct crypt **out, char id[KEYS_ID_HEX + 1], struct dverr *err);
/* The key objects (their clear fields; -EIO names a malformed one), sorted by creation time. */
int keys_list(struct objstore *s, struct key_info **out, size_t *n, struct dverr *err);
/* Delete key object id (-ENOENT when absent). */
int keys_remove(struct objstore *s, const char *id, struct dverr *err);
/* true when id is a key id (KEYS_ID_HEX lowercase hex). */
bool keys_id_ok(const char *id);

/* ---- passphrases ---- */
/* true when the configuration names a passphrase (password_file or password_command). */
bool keys_passphrase_configured(const struct config *cfg);
/* The passphrase (see above) into out; prompt is shown when the terminal is asked. -ENOKEY when
 * none is configured and there is no terminal, -EINVAL when both sources are set, -EPERM for a
 * loose file, or the command's failure. */
int keys_passphrase(const struct config *cfg, const char *prompt, struct buf *out,
                    struct dverr *err);
/* A passphrase read from a file with the secret-file rules (0600, yours, not a symlink). */
int keys_passphrase_file(const char *path, struct buf *out, struct dverr *err);
/* A new passphrase typed twice on the terminal: -ENOKEY (no message: the caller names the other
 * ways) without a terminal, -EINVAL when the two differ or it is empty. */
int keys_passphrase_new_tty(struct buf *out, struct dverr *err);
/* Wipe and free a passphrase buffer. */
void keys_passphrase_release(struct buf *b);

#endif
