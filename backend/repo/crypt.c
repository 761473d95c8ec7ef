/* crypt: AES-256-GCM parts, HMAC-SHA-256 names and sealed objects (format and rules in crypt.h),
 * through OpenSSL 3's EVP API.
 * HMAC contexts are copied from templates keyed once in crypt_new (EVP_MAC_CTX_dup reads the
 * template only), so a name costs what a plain SHA-256 costs. An object's GCM context is keyed
 * once and re-armed with each part's nonce.
 * Threading: struct crypt is immutable after crypt_new (the templates are only copied from);
 * crypt_obj and crypt_hash belong to one thread. */
#include "backend/repo/crypt.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define KEY_HALF (CRYPT_MASTER_BYTES / 2)
#define NONCE_BYTES 12
static const char OBJ_KEY_LABEL[] = "dvsnap-object-key-v1";
static const char SEALED_AD[] = "dvsnap-sealed-v1";

struct crypt {
    unsigned char master[CRYPT_MASTER_BYTES];
    EVP_MAC *mac;
    EVP_MAC_CTX *id_tmpl;  /* HMAC keyed with K_id */
    EVP_MAC_CTX *enc_tmpl; /* HMAC keyed with K_enc: derives object keys */
};

int crypt_random(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

static EVP_MAC_CTX *hmac_keyed(EVP_MAC *mac, const unsigned char *key, size_t n)
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (ctx && EVP_MAC_init(ctx, key, n, params) == 1)
        return ctx;
    EVP_MAC_CTX_free(ctx);
    return NULL;
}

int crypt_new(const unsigned char master[CRYPT_MASTER_BYTES], struct crypt **out)
{
    *out = NULL;
    struct crypt *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    memcpy(c->master, master, CRYPT_MASTER_BYTES);
    if (!(c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) ||
        !(c->enc_tmpl = hmac_keyed(c->mac, c->master, KEY_HALF)) ||
        !(c->id_tmpl = hmac_keyed(c->mac, c->master + KEY_HALF, KEY_HALF))) {
        crypt_free(c);
        return -EIO;
    }
    *out = c;
    return 0;
}

int crypt_generate(struct crypt **out)
{
    unsigned char m[CRYPT_MASTER_BYTES];
    int rc = crypt_random(m, sizeof m);
    if (!rc)
        rc = crypt_new(m, out);
    OPENSSL_cleanse(m, sizeof m);
    return rc;
}

void crypt_free(struct crypt *c)
{
    if (!c)
        return;
    EVP_MAC_CTX_free(c->id_tmpl);
    EVP_MAC_CTX_free(c->enc_tmpl);
    EVP_MAC_free(c->mac);
    OPENSSL_cleanse(c->master, sizeof c->master);
    free(c);
}

void crypt_master(const struct crypt *c, unsigned char out[CRYPT_MASTER_BYTES])
{
    memcpy(out, c->master, CRYPT_MASTER_BYTES);
}

/* ---------- names ---------- */

struct crypt_hash {
    EVP_MAC_CTX *mac;        /* keyed */
    struct sha256_stream *sha; /* unkeyed (no crypt) */
};

struct crypt_hash *crypt_hash_new(const struct crypt *c)
{
    struct crypt_hash *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (c ? !(h->mac = EVP_MAC_CTX_dup(c->id_tmpl)) : !(h->sha = sha256_stream_new())) {
        free(h);
        return NULL;
    }
    return h;
}

void crypt_hash_update(struct crypt_hash *h, const void *data, size_t len)
{
    if (h->mac)
        EVP_MAC_update(h->mac, data, len);
    else
        sha256_stream_update(h->sha, data, len);
}

void crypt_hash_finish(struct crypt_hash *h, char hex[65])
{
    char scratch[65];
    if (h->mac) {
        unsigned char md[32];
        size_t n = 0;
        if (EVP_MAC_final(h->mac, md, &n, sizeof md) != 1 || n != sizeof md)
            abort(); /* cannot fail with a valid context; no id is better than a wrong one */
        hex_encode(md, sizeof md, hex ? hex : scratch);
        EVP_MAC_CTX_free(h->mac);
    } else {
        sha256_stream_finish(h->sha, hex ? hex : scratch);
    }
    free(h);
}

void crypt_id(const struct crypt *c, const void *data, size_t len, char hex[65])
{
    if (!c) {
        sha256_hex(data, len, hex);
        return;
    }
    struct crypt_hash *h = crypt_hash_new(c);
    if (!h)
        abort(); /* out of memory for a 200-byte context: as sha256_hex does */
    crypt_hash_update(h, data, len);
    crypt_hash_finish(h, hex);
}

uint64_t crypt_line_hash(const struct crypt *c, const void *line, size_t len)
{
    char h[65];
    crypt_id(c, line, len, h);
    uint64_t v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 4) | (uint64_t)(h[i] <= '9' ? h[i] - '0' : h[i] - 'a' + 10);
    return v;
}

/* ---------- one object's key ---------- */

struct crypt_obj {
    EVP_CIPHER_CTX *enc, *dec; /* keyed on first use */
    unsigned char key[32];
};

int crypt_obj_open(const struct crypt *c, const unsigned char salt[CRYPT_SALT_BYTES],
                   struct crypt_obj **out)
{
    *out = NULL;
    struct crypt_obj *o = calloc(1, sizeof *o);
    if (!o)
        return -ENOMEM;
    EVP_MAC_CTX *m = EVP_MAC_CTX_dup(c->enc_tmpl);
    size_t n = 0;
    int ok = m && EVP_MAC_update(m, (const unsigned char *)OBJ_KEY_LABEL, sizeof OBJ_KEY_LABEL) &&
             EVP_MAC_update(m, salt, CRYPT_SALT_BYTES) &&
             EVP_MAC_final(m, o->key, &n, sizeof o->key) && n == sizeof o->key;
    EVP_MAC_CTX_free(m);
    if (!ok) {
        crypt_obj_free(o);
        return -ENOMEM;
    }
    *out = o;
    return 0;
}

int crypt_obj_from_key(const unsigned char key[32], struct crypt_obj **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return -ENOMEM;
    memcpy((*out)->key, key, sizeof (*out)->key);
    return 0;
}

int crypt_scrypt(const void *pass, size_t pass_len, const unsigned char *salt, size_t salt_len,
                 int log2n, int r, int p, unsigned char out[32])
{
    if (log2n < 10 || log2n > 22 || r < 1 || r > 32 || p < 1 || p > 16)
        return -EINVAL;
    uint64_t n = (uint64_t)1 << log2n, mem = 128 * n * (uint64_t)r + 128 * (uint64_t)r * p;
    if (mem > CRYPT_SCRYPT_MAX_MEMORY)
        return -EINVAL;
    return EVP_PBE_scrypt(pass, pass_len, salt, salt_len, n, (uint64_t)r, (uint64_t)p,
                          mem + (1u << 20), out, 32) == 1 ? 0 : -ENOMEM;
}

int crypt_obj_new(const struct crypt *c, unsigned char salt[CRYPT_SALT_BYTES],
                  struct crypt_obj **out)
{
    *out = NULL;
    int rc = crypt_random(salt, CRYPT_SALT_BYTES);
    return rc ? rc : crypt_obj_open(c, salt, out);
}

void crypt_obj_free(struct crypt_obj *o)
{
    if (!o)
        return;
    EVP_CIPHER_CTX_free(o->enc);
    EVP_CIPHER_CTX_free(o->dec);
    OPENSSL_cleanse(o->key, sizeof o->key);
    free(o);
}

static void nonce_of(uint64_t part, bool last, unsigned char iv[NONCE_BYTES])
{
    for (int i = 0; i < 8; i++)
        iv[i] = (unsigned char)(part >> (8 * i));
    iv[8] = last ? 1 : 0;
    iv[9] = iv[10] = iv[11] = 0;
}

int crypt_obj_seal(struct crypt_obj *o, uint64_t part, bool last, const void *ad, size_t ad_len,
                   const void *in, size_t n, unsigned char *out)
{
    unsigned char iv[NONCE_BYTES];
    int len = 0;
    if (n > (size_t)INT32_MAX || ad_len > (size_t)INT32_MAX)
        return -EFBIG;
    if (!o->enc) {
        if (!(o->enc = EVP_CIPHER_CTX_new()))
            return -ENOMEM;
        if (EVP_EncryptInit_ex(o->enc, EVP_aes_256_gcm(), NULL, o->key, NULL) != 1)
            return -EIO;
    }
    nonce_of(part, last, iv);
    if (EVP_EncryptInit_ex(o->enc, NULL, NULL, NULL, iv) != 1 ||
        (ad_len && EVP_EncryptUpdate(o->enc, NULL, &len, ad, (int)ad_len) != 1) ||
        (n && EVP_EncryptUpdate(o->enc, out, &len, in, (int)n) != 1) ||
        EVP_EncryptFinal_ex(o->enc, out + n, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(o->enc, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_BYTES, out + n) != 1)
        return -EIO;
    return 0;
}

int crypt_obj_open_part(struct crypt_obj *o, uint64_t part, bool last, const void *ad,
                        size_t ad_len, const unsigned char *in, size_t n, unsigned char *out)
{
    unsigned char iv[NONCE_BYTES], tag[CRYPT_TAG_BYTES];
    int len = 0;
    if (n < CRYPT_TAG_BYTES)
        return -EBADMSG;
    if (n > (size_t)INT32_MAX || ad_len > (size_t)INT32_MAX)
        return -EFBIG;
    if (!o->dec) {
        if (!(o->dec = EVP_CIPHER_CTX_new()))
            return -ENOMEM;
        if (EVP_DecryptInit_ex(o->dec, EVP_aes_256_gcm(), NULL, o->key, NULL) != 1)
            return -EIO;
    }
    size_t body = n - CRYPT_TAG_BYTES;
    memcpy(tag, in + body, CRYPT_TAG_BYTES); /* out may be in: keep the tag first */
    nonce_of(part, last, iv);
    if (EVP_DecryptInit_ex(o->dec, NULL, NULL, NULL, iv) != 1 ||
        (ad_len && EVP_DecryptUpdate(o->dec, NULL, &len, ad, (int)ad_len) != 1) ||
        (body && EVP_DecryptUpdate(o->dec, out, &len, in, (int)body) != 1) ||
        EVP_CIPHER_CTX_ctrl(o->dec, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_BYTES, tag) != 1)
        return -EIO;
    if (EVP_DecryptFinal_ex(o->dec, out + body, &len) != 1) {
        OPENSSL_cleanse(out, body); /* never leave unauthenticated plaintext behind */
        return -EBADMSG;
    }
    return 0;
}

/* ---------- sealed objects ---------- */

static uint64_t parts_of(uint64_t plain)
{
    return plain == 0 ? 1 : (plain + CRYPT_CHUNK - 1) / CRYPT_CHUNK;
}

uint64_t crypt_sealed_size(uint64_t plain)
{
    return CRYPT_SEALED_HEADER + plain + CRYPT_TAG_BYTES * parts_of(plain);
}

int crypt_sealed_plain_size(uint64_t stored, uint64_t *plain)
{
    const uint64_t full = (uint64_t)CRYPT_CHUNK + CRYPT_TAG_BYTES;
    if (stored < CRYPT_SEALED_HEADER + CRYPT_TAG_BYTES)
        return -EBADMSG;
    uint64_t body = stored - CRYPT_SEALED_HEADER, k = body / full, r = body % full;
    if (r == 0)
        *plain = k * CRYPT_CHUNK;
    else if (r >= CRYPT_TAG_BYTES && (r > CRYPT_TAG_BYTES || k == 0))
        *plain = k * CRYPT_CHUNK + (r - CRYPT_TAG_BYTES);
    else
        return -EBADMSG;
    return crypt_sealed_size(*plain) == stored ? 0 : -EBADMSG;
}

/* The associated data of a sealed object's parts: SEALED_AD, NUL, identity. */
static int sealed_ad(const char *identity, struct buf *ad)
{
    int rc = buf_add(ad, SEALED_AD, sizeof SEALED_AD);
    return rc ? rc : buf_addstr(ad, identity);
}

int crypt_seal(const struct crypt *c, const char *identity, const void *in, size_t n,
               struct buf *out)
{
    unsigned char salt[CRYPT_SALT_BYTES];
    struct crypt_obj *o = NULL;
    struct buf ad = BUF_INIT;
    size_t start = out->len;
    uint64_t parts = parts_of(n);
    int rc = sealed_ad(identity, &ad);
    if (!rc)
        rc = crypt_obj_new(c, salt, &o);
    if (!rc)
        rc = buf_reserve(out, crypt_sealed_size(n));
    if (!rc && !(rc = buf_add(out, CRYPT_SEALED_MAGIC, 8)))
        rc = buf_add(out, salt, sizeof salt);
    const unsigned char *p = in ? in : (const unsigned char *)"";
    for (uint64_t i = 0; !rc && i < parts; i++) {
        size_t len = i + 1 < parts ? CRYPT_CHUNK : n - (size_t)i * CRYPT_CHUNK;
        rc = crypt_obj_seal(o, i, i + 1 == parts, ad.data, ad.len, p + (size_t)i * CRYPT_CHUNK,
                            len, (unsigned char *)out->data + out->len);
        if (!rc)
            out->len += len + CRYPT_TAG_BYTES;
    }
    if (rc) {
        out->len = start;
    }
    if (out->data)
        out->data[out->len] = '\0';
    crypt_obj_free(o);
    buf_release(&ad);
    return rc;
}

int crypt_unseal(const struct crypt *c, const char *identity, const void *in, size_t n,
                 struct buf *out)
{
    uint64_t plain;
    const unsigned char *p = in;
    if (crypt_sealed_plain_size(n, &plain) || memcmp(p, CRYPT_SEALED_MAGIC, 8) != 0)
        return -EBADMSG;
    struct crypt_obj *o = NULL;
    struct buf ad = BUF_INIT;
    size_t start = out->len;
    uint64_t parts = parts_of(plain);
    int rc = sealed_ad(identity, &ad);
    if (!rc)
        rc = crypt_obj_open(c, p + 8, &o);
    if (!rc)
        rc = buf_reserve(out, plain + 1);
    p += CRYPT_SEALED_HEADER;
    for (uint64_t i = 0; !rc && i < parts; i++) {
        size_t len = i + 1 < parts ? CRYPT_CHUNK : (size_t)(plain - i * CRYPT_CHUNK);
        rc = crypt_obj_open_part(o, i, i + 1 == parts, ad.data, ad.len, p, len + CRYPT_TAG_BYTES,
                                 (unsigned char *)out->data + out->len);
        if (!rc)
            out->len += len;
        p += len + CRYPT_TAG_BYTES;
    }
    if (rc && out->data) {
        OPENSSL_cleanse(out->data + start, out->len - start);
        out->len = start;
    }
    if (out->data)
        out->data[out->len] = '\0';
    crypt_obj_free(o);
    buf_release(&ad);
    return rc;
}
