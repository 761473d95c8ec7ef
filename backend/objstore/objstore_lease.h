/* objstore_lease: a single-holder lease kept as objects in a store (issue 6: one capture writer
 * per environment across machines that share an object-storage repository).
 *
 * A lease NAME is a series of generation objects NAME.<gen> (gen = 10 digits). Each holds a small
 * JSON document: holder (host and pid, with the machine's boot id and pid namespace and the
 * process's start time), a random nonce, purpose, and the wall-clock expiry. The lease is held by
 * the highest generation while it has not expired and, when its holder ran on this machine, while
 * that process still runs (a writer killed here frees its lease at once, as a flock would).
 *  - take: list NAME.*; none -> put_if_absent NAME.0000000001. The highest one live and not ours ->
 *    -EBUSY (message names the holder, its purpose and when it expires). Expired -> put_if_absent
 *    of the next generation: of several takers only one can create it, so a takeover is safe even
 *    when they race. Generations below the previous one are deleted afterwards (best effort): the
 *    previous one stays, so that a listing racing with a takeover still finds the lease's number,
 *    and a generation number is never used twice.
 *  - A thread renews the lease every ttl/3 (rewrites our generation with a new expiry) and checks
 *    that no higher generation appeared; if one did (we were too slow and someone took over), the
 *    lease is marked lost and objstore_lease_check returns -ESTALE from then on.
 *  - release: stops the thread and, unless the lease was taken over, creates the next generation
 *    as an expired document (free at once), then deletes the generations below ours.
 * A holder that dies stops renewing; the lease expires ttl seconds after its last renewal.
 * On an append-only store (objstore.h) renewals and releases create the next generation instead of
 * rewriting or deleting ours, and nothing is deleted until objstore_lease_gc (prune).
 *
 * Requires put_if_absent to be atomic (the directory store, Azure Blob; S3 where the server
 * honours If-None-Match, see objstore_s3.c). Expiry compares wall clocks of different machines:
 * keep them in sync (NTP) well within the ttl. Thread-safe: one mutex guards the lost flag and
 * the stop request; the store is used by the caller and the renewal thread (drivers are
 * thread-safe). */
#ifndef DVSNAP_OBJSTORE_LEASE_H
#define DVSNAP_OBJSTORE_LEASE_H

#include <stdint.h>

#include "backend/objstore/objstore.h"
#include "backend/base/util.h"

struct objstore_lease;

/* Default time to live in seconds; $DVSNAP_LEASE_TTL overrides it (tests use a few seconds). */
#define OBJSTORE_LEASE_TTL_S 120
int64_t objstore_lease_default_ttl(void);

/* Take the lease `name` (a valid object name, e.g. "locks/contoso-prod.lease") for `purpose`
 * (shown to a second taker). ttl_s <= 0: the default. The store must outlive the lease.
 * 0 (*out holds the lease), -EBUSY (held by a live holder; message in err), or -errno. */
int objstore_lease_take(struct objstore *s, const char *name, const char *purpose, int64_t ttl_s,
                        struct objstore_lease **out, struct dverr *err);
/* 0 while the lease is ours; -ESTALE (with a message) once it was taken over; renews first
 * when the last renewal is older than ttl/3. */
int objstore_lease_check(struct objstore_lease *l, struct dverr *err);
/* Stop renewing and, if the lease is still ours, free it (the next generation, expired). Accepts
 * NULL. */
void objstore_lease_release(struct objstore_lease *l);
/* Describe the current holder of `name` into out ("" when free or expired). For messages and
 * tests. 0 or -errno. */
int objstore_lease_holder(struct objstore *s, const char *name, struct buf *out,
                          struct dverr *err);

/* Poll (every 0.5 s, up to wait_ms) until the lease `name` is free or expired. 0, or -EBUSY with
 * the holder named. */
int objstore_lease_wait_free(struct objstore *s, const char *name, int64_t wait_ms,
                             struct dverr *err);
/* The live leases whose names start with prefix (e.g. "locks/"), except `except` (may be NULL):
 * their holders described in out, one per line; *count how many. 0 or -errno. */
int objstore_lease_live(struct objstore *s, const char *prefix, const char *except,
                        struct buf *out, int *count, struct dverr *err);

/* Delete the generations below the newest but one of every lease under prefix (an append-only
 * store keeps them: see above); *removed counts them. A store's refusal (a locked object) is returned. 0 or
 * -errno. */
int objstore_lease_gc(struct objstore *s, const char *prefix, uint64_t *removed,
                      struct dverr *err);

#endif
