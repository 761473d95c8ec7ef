/* crypt: the repository's encryption and keyed object names (issue 16), over OpenSSL's EVP API
 * (AES-256-GCM, HMAC-SHA-256); no cryptography of our own.
 *
 * Keys. A repository has one random master key of CRYPT_MASTER_BYTES: the first half is the
 * encryption key K_enc, the second the naming key K_id. Key objects (keys.h) hold it wrapped by
 * passphrases; struct crypt holds it unwrapped, in memory only.
 *
 * Names. An object's id is HMAC-SHA-256(K_id, plaintext) in hex (crypt_id): equal contents get
 * equal ids, so dedup works, and an id says nothing about the content to anyone without K_id (no
 * one can confirm that a known document is stored). Without a crypt (an unencrypted repository)
 * the id is the SHA-256 of the bytes, as before. crypt_line_hash (the capture state's 64-bit
 * record hash) is the first 8 bytes of the same id.
 *
 * Objects. Every object is sealed with a key of its own: a random 32-byte salt stored with it,
 * subkey = HMAC-SHA-256(K_enc, "dvsnap-object-key-v1" || salt). Its parts are sealed with
 * AES-256-GCM under that subkey with the nonce (u64 part number, u32 flags: 1 = last part),
 * little-endian, so no nonce repeats under a key: part numbers are unique within an object and
 * salts across objects (2^-256 to collide). The associated data names what the part is and which
 * object it belongs to (the caller's identity string: a blob's id, a manifest's object name), so
 * a part moved to another object, another place or another kind of object fails to open.
 *
 * Sealed objects (blobs, manifests, environment documents):
 *   "DVSNENC1"  salt (32)  part 0 ... part N-1
 * each part CRYPT_CHUNK plaintext bytes (the last may be shorter; an empty object has one empty
 * part) followed by its 16-byte tag, only the last flagged last: truncation, extension and
 * reordering fail. The plaintext size follows from the stored size (crypt_sealed_plain_size), so a
 * reader can fetch parts by range. Segments use crypt_obj directly, one part per zstd frame
 * (segment.h).
 *
 * Errors: -EBADMSG when something does not open (tampered, truncated, wrong key), -ENOMEM.
 * Threading: a struct crypt is immutable after crypt_new and may be shared by any number of
 * threads; a crypt_obj and a crypt_hash belong to one thread at a time. */
#ifndef DVSNAP_CRYPT_H
#define DVSNAP_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"

#define CRYPT_MASTER_BYTES 64
#define CRYPT_SALT_BYTES 32
#define CRYPT_TAG_BYTES 16
#define CRYPT_CHUNK (1u << 20)
#define CRYPT_SEALED_MAGIC "DVSNENC1"
#define CRYPT_SEALED_HEADER (8 + CRYPT_SALT_BYTES)
#define CRYPT_ALGORITHM "aes-256-gcm, hmac-sha256 names"

struct crypt;

/* From a master key (copied). -ENOMEM, or -EIO when OpenSSL lacks a primitive. */
int crypt_new(const unsigned char master[CRYPT_MASTER_BYTES], struct crypt **out);
/* A fresh random master key. */
int crypt_generate(struct crypt **out);
void crypt_free(struct crypt *c); /* accepts NULL; wipes the keys */
void crypt_master(const struct crypt *c, unsigned char out[CRYPT_MASTER_BYTES]);
/* n bytes from the system's CSPRNG (-EIO when it fails). */
int crypt_random(void *buf, size_t n);

/* ---- names ---- */
/* The id of data (64 lowercase hex): keyed with c, SHA-256 when c is NULL. */
void crypt_id(const struct crypt *c, const void *data, size_t len, char hex[65]);
struct crypt_hash;
struct crypt_hash *crypt_hash_new(const struct crypt *c); /* NULL on out of memory */
void crypt_hash_update(struct crypt_hash *h, const void *data, size_t len);
/* The id of everything given; frees h (finish with hex NULL just frees). */
void crypt_hash_finish(struct crypt_hash *h, char hex[65]);
/* The first 8 bytes of crypt_id(line), big-endian. */
uint64_t crypt_line_hash(const struct crypt *c, const void *line, size_t len);

/* ---- one object's key ---- */
struct crypt_obj;
/* A new object: a fresh salt (written to salt) and its key. */
int crypt_obj_new(const struct crypt *c, unsigned char salt[CRYPT_SALT_BYTES],
                  struct crypt_obj **out);
/* An existing object's key from its salt. */
int crypt_obj_open(const struct crypt *c, const unsigned char salt[CRYPT_SALT_BYTES],
                   struct crypt_obj **out);
void crypt_obj_free(struct crypt_obj *o); /* accepts NULL */
/* Seal n bytes of in as part `part` (last: the object's last part) into out, which receives n +
 * CRYPT_TAG_BYTES bytes (out may be in). */
int crypt_obj_seal(struct crypt_obj *o, uint64_t part, bool last, const void *ad, size_t ad_len,
                   const void *in, size_t n, unsigned char *out);
/* Open a sealed part of n bytes (tag included) into out (n - CRYPT_TAG_BYTES bytes; out may be
 * in). -EBADMSG when it does not authenticate. */
int crypt_obj_open_part(struct crypt_obj *o, uint64_t part, bool last, const void *ad,
                        size_t ad_len, const unsigned char *in, size_t n, unsigned char *out);

/* An object key given whole (a key wrapping key, keys.h), for keys used to seal one part only. */
int crypt_obj_from_key(const unsigned char key[32], struct crypt_obj **out);
/* scrypt (RFC 7914) of a passphrase: a 32-byte key. log2n 10..22, r 1..32, p 1..16 and at most
 * CRYPT_SCRYPT_MAX_MEMORY bytes (-EINVAL otherwise: a key object cannot make us allocate more);
 * -ENOMEM when the memory is not there. */
#define CRYPT_SCRYPT_MAX_MEMORY ((uint64_t)1 << 30)
int crypt_scrypt(const void *pass, size_t pass_len, const unsigned char *salt, size_t salt_len,
                 int log2n, int r, int p, unsigned char out[32]);

/* ---- sealed objects ---- */
/* The stored size of a sealed object of plain bytes. */
uint64_t crypt_sealed_size(uint64_t plain);
/* The plaintext size of a sealed object of stored bytes; -EBADMSG when no plaintext size gives
 * that stored size. */
int crypt_sealed_plain_size(uint64_t stored, uint64_t *plain);
/* Seal in[0..n) as an object named by identity (the associated data), appended to out. */
int crypt_seal(const struct crypt *c, const char *identity, const void *in, size_t n,
               struct buf *out);
/* Open a sealed object appended to out (out keeps its length on failure). -EBADMSG when it is not
 * the object identity names, or damaged. */
int crypt_unseal(const struct crypt *c, const char *identity, const void *in, size_t n,
                 struct buf *out);

#endif
