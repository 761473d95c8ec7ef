/* blob: content-addressed blobs in the store (attachments, file columns, schema documents), plain
 * or sealed (crypt.h), for repo.c (repo_blob_put/get) and for segments whose note lines keep their
 * attachment once (segment_int.h). A blob is objects/<2 hex>/<id>, id = crypt_id of its bytes
 * (SHA-256 in an unencrypted repository, HMAC-SHA-256 in an encrypted one). Sealed, it is a
 * crypt_seal object whose identity is "blob:<id>", so a blob stored under another blob's name,
 * truncated or changed fails to open; every read also checks that the bytes give the id.
 * Threading: no state of its own (the store and the crypt are thread-safe). */
#ifndef DVSNAP_BLOB_H
#define DVSNAP_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"
#include "backend/objstore/objstore.h"
#include "backend/repo/crypt.h"

#define BLOB_SIZE_UNKNOWN UINT64_MAX

/* Store data as a blob (nothing is written when the object exists with the expected size); id
 * receives its id. */
int blob_put(struct objstore *store, const struct crypt *c, const void *data, size_t len,
             char id[65], struct dverr *err);
/* Append the blob's bytes to out. size: its byte count when the caller knows it (saves a stat),
 * else BLOB_SIZE_UNKNOWN; a blob larger than max gives -EFBIG. -ENOENT when missing, -EIO when
 * damaged (out keeps its length), with detail in err. */
int blob_get(struct objstore *store, const struct crypt *c, const char *id, uint64_t size,
             uint64_t max, struct buf *out, struct dverr *err);

#endif
