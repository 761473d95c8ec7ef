/* seed_files: the bytes of the sample tenant (seed_int.h): note attachments (annotation
 * documentbody, Base64 of 17 bytes to 300 KB of believable content behind the right magic
 * numbers, names with spaces, Unicode and a '/'; in the --shape real org contoso-prod, one note
 * per two accounts, three in five with an attachment of 1 KB to 5 MB, most of them small), new_project's file column (one of more than a
 * 4 MiB chunk in contoso-prod) and contact images (2-8 KB, one in ten 20-100 KB; the thumbnail
 * derived from the full image: dvsim_image_thumbnail). Single-threaded (see seed_int.h). */
#include "tools/dvsim/seed_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const codenames[] = {"Aurora", "Borealis", "Cygnus", "Draco", "Éclair", "Fénix",
                                        "Gemini", "Hydra", "Ίκαρος", "Juno", "Kestrel", "Lynx"};

static void project_name(const struct gen *g, uint64_t i, char *out, size_t n)
{
    uint64_t h = seed_hash(g, T_PROJECT, i, 3);
    snprintf(out, n, "Project %s %llu", codenames[h % NA(codenames)], (unsigned long long)i + 1);
}

struct attach_kind {
    const char *name, *mime;
};
static const struct attach_kind attach_kinds[] = {
    {"Quarterly report Q3.pdf", "application/pdf"},
    {"Zoë's notes.txt", "text/plain"},
    {"contract v1/v2.pdf", "application/pdf"},
    {"会议记录.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"photo (1).png", "image/png"},
    {"archive 2023.zip", "application/zip"},
    {"café menu.txt", "text/plain"},
};
static const size_t attach_sizes[] = {17, 1024, 4000, 65536, 300000, 2500, 123};

/* An attachment of the real shape: 70% of 1-16 KB, 25% of 16-512 KB, 5% of 512 KB-5 MB. */
static size_t real_note_size(uint64_t h)
{
    uint64_t r = h % 100, x = h >> 16;
    if (r < 70)
        return 1024 + (size_t)(x % (15 * 1024));
    if (r < 95)
        return 16 * 1024 + (size_t)(x % (496 * 1024));
    return 512 * 1024 + (size_t)(x % (4608 * 1024));
}

static void fake_bytes(uint64_t h, const char *mime, size_t n, struct buf *out)
{
    buf_reset(out);
    buf_reserve(out, n);
    const char *magic = "";
    if (strcmp(mime, "application/pdf") == 0)
        magic = "%PDF-1.4\n";
    else if (strcmp(mime, "image/png") == 0)
        magic = "\x89PNG\r\n\x1a\n";
    else if (strstr(mime, "zip") || strstr(mime, "openxml"))
        magic = "PK\x03\x04";
    buf_add(out, magic, strlen(magic) < n ? strlen(magic) : n);
    bool text = strcmp(mime, "text/plain") == 0;
    static const char words[] = "Lorem ipsum dolor sit amet, größer café naïve résumé. ";
    uint64_t s = h;
    while (out->len < n) {
        if (text) {
            size_t k = n - out->len < sizeof words - 1 ? n - out->len : sizeof words - 1;
            buf_add(out, words, k);
        } else {
            uint64_t r = dvsim_splitmix64(&s);
            size_t k = n - out->len < 8 ? n - out->len : 8;
            buf_add(out, &r, k);
        }
    }
}

/* ---- images ---- */
int dvsim_image_thumbnail(const void *full, size_t n, struct buf *out)
{
    /* the service crops and scales to 144x144; dvsim derives 1 KiB that depend only on the full
     * image, behind a PNG signature */
    char hex[65], next[80];
    buf_reset(out);
    int rc = buf_add(out, "\x89PNG\r\n\x1a\n", 8);
    sha256_hex(full, n, hex);
    for (unsigned k = 0; !rc && out->len < 1032; k++) {
        rc = buf_add(out, hex, 64);
        int l = snprintf(next, sizeof next, "%.64s%u", hex, k);
        sha256_hex(next, (size_t)l, hex);
    }
    return rc;
}

/* The image columns of a contact with an image: full image in the files table, thumbnail (Base64)
 * in the record. */
int seed_contact_image(struct gen *g, uint64_t i, const char *id, uint64_t h)
{
    const struct table_def *t = &dvschema_tables[T_CONTACT];
    size_t size = (h >> 46) % 10 == 0 ? 20000 + (size_t)(h % 80000) : 2000 + (size_t)(h % 6000);
    char name[64], iid[37], num[32], url[200];
    fake_bytes(h, "image/png", size, &g->tmp);
    snprintf(name, sizeof name, "photo %llu.png", (unsigned long long)i + 1);
    sqlite3_reset(g->ins_file);
    sqlite3_bind_int(g->ins_file, 1, table_id(g->env, T_CONTACT));
    sqlite3_bind_text(g->ins_file, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(g->ins_file, 3, "entityimage", -1, SQLITE_STATIC);
    sqlite3_bind_text(g->ins_file, 4, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(g->ins_file, 5, "image/png", -1, SQLITE_STATIC);
    sqlite3_bind_blob(g->ins_file, 6, g->tmp.data, (int)g->tmp.len, SQLITE_STATIC);
    if (sqlite3_step(g->ins_file) != SQLITE_DONE)
        return -EIO;
    struct buf thumb = BUF_INIT, b64 = BUF_INIT;
    int rc = dvsim_image_thumbnail(g->tmp.data, g->tmp.len, &thumb);
    rc = rc ? rc : dvsim_base64((const unsigned char *)thumb.data, thumb.len, &b64);
    if (!rc) {
        int64_t c, m;
        seed_time_pair(g, T_CONTACT, i, &c, &m);
        dvsim_guid(seed_hash(g, T_CONTACT, i, 12), seed_hash(g, T_CONTACT, i, 13), iid);
        snprintf(num, sizeof num, "%lld", (long long)((m + 62135596800LL) * 10000000LL));
        lb_str(&g->lb, "entityimage", b64.data);
        lb_str(&g->lb, "entityimageid", iid);
        lb_col(&g->lb, t, "entityimage_timestamp", num);
        snprintf(url, sizeof url, "/Image/download.aspx?Entity=contact&Attribute=entityimage&Id=%s&Timestamp=%s",
                 iid, num);
        lb_str(&g->lb, "entityimage_url", url);
    }
    buf_release(&thumb);
    buf_release(&b64);
    return rc;
}

int seed_gen_annotation(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_ANNOTATION];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = seed_hash(g, T_ANNOTATION, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_ANNOTATION, i, id);
    lb_str(&g->lb, "annotationid", id);
    int64_t na = g->counts[T_ACCOUNT];
    uint64_t a = na ? h % (uint64_t)na : 0;
    seed_account_name(g, a, name, sizeof name);
    seed_id(g, T_ACCOUNT, a, rid);
    lb_lookup(&g->lb, "objectid", "account", na ? rid : NULL, name);
    lb_str(&g->lb, "objecttypecode", "account");
    seed_owner(g, T_ANNOTATION, i, true);
    /* the real shape's org: two notes in five are plain, an attachment's size is skewed */
    bool real = g->d->real_shape && g->env == 0;
    if (real ? h % 5 < 2 : i % 4 == 3) { /* a plain note */
        snprintf(v, sizeof v, "Call notes %llu", (unsigned long long)i + 1);
        lb_str(&g->lb, "subject", v);
        lb_str(&g->lb, "notetext", "Spoke with the customer; follow up next week.\nTODO: send \"pricing\" ✉");
        lb_str(&g->lb, "filename", NULL);
        lb_str(&g->lb, "mimetype", NULL);
        lb_str(&g->lb, "documentbody", NULL);
        lb_col(&g->lb, t, "filesize", "0");
        lb_col(&g->lb, t, "isdocument", "false");
    } else {
        const struct attach_kind *k = &attach_kinds[i % NA(attach_kinds)];
        size_t size = real ? real_note_size(seed_hash(g, T_ANNOTATION, i, 8))
                           : attach_sizes[(i / NA(attach_kinds)) % NA(attach_sizes)] + (size_t)(h % 97);
        fake_bytes(h, k->mime, size, &g->tmp);
        struct buf b64 = BUF_INIT;
        dvsim_base64((const unsigned char *)g->tmp.data, g->tmp.len, &b64);
        snprintf(v, sizeof v, "Attachment: %s", k->name);
        lb_str(&g->lb, "subject", v);
        lb_str(&g->lb, "notetext", NULL);
        lb_str(&g->lb, "filename", k->name);
        lb_str(&g->lb, "mimetype", k->mime);
        lb_str(&g->lb, "documentbody", b64.data ? b64.data : "");
        buf_release(&b64);
        snprintf(v, sizeof v, "%zu", size);
        lb_col(&g->lb, t, "filesize", v);
        lb_col(&g->lb, t, "isdocument", "true");
    }
    seed_common(g, t, i, ver);
    return seed_insert(g, T_ANNOTATION, id);
}

int seed_gen_project(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_PROJECT];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = seed_hash(g, T_PROJECT, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_PROJECT, i, id);
    lb_str(&g->lb, "new_projectid", id);
    project_name(g, i, name, sizeof name);
    lb_str(&g->lb, "new_name", name);
    if (i == 0)
        snprintf(v, sizeof v, "12345678901234.1234567890");
    else
        snprintf(v, sizeof v, "%llu.%010llu", (unsigned long long)(h % 100000000000000ull),
                 (unsigned long long)((h >> 7) % 10000000000ull));
    lb_col(&g->lb, t, "new_budget", v);
    snprintf(v, sizeof v, "%llu", 9007199254740993ull + 2 * (unsigned long long)i);
    lb_col(&g->lb, t, "new_bignumber", v);
    static const char *const stages[] = {"100000000", "100000001", "100000002", "100000003"};
    lb_col(&g->lb, t, "new_stage", stages[(h >> 9) % 4]);
    char q[40];
    int64_t c, m;
    seed_time_pair(g, T_PROJECT, i + 1000, &c, &m);
    seed_iso_quoted(c, q);
    lb_col(&g->lb, t, "new_startdate", (h >> 11) % 5 == 0 ? "null" : q);
    int64_t na = g->counts[T_ACCOUNT];
    uint64_t a = na ? (h >> 13) % (uint64_t)na : 0;
    seed_id(g, T_ACCOUNT, a, rid);
    seed_account_name(g, a, name, sizeof name);
    lb_lookup(&g->lb, "new_accountid", "account", na ? rid : NULL, name);
    seed_owner(g, T_PROJECT, i, true);
    seed_state(g, t, 0, 1);
    if (i % 3 == 2) {
        lb_str(&g->lb, "new_document", NULL);
        lb_str(&g->lb, "new_document_name", NULL);
    } else {
        static const struct attach_kind files[] = {
            {"Project plan.pdf", "application/pdf"}, {"budget 2024 (final).zip", "application/zip"},
            {"Übersicht/Plan.txt", "text/plain"}, {"diagram.png", "image/png"}};
        const struct attach_kind *k = &files[i % 4];
        size_t size = 1000 + (size_t)(h % 50000);
        if (i == 0 && g->env == 0)
            size = 5u * 1024 * 1024 + 12345; /* more than one 4 MiB chunk */
        char fid[37];
        dvsim_guid(seed_hash(g, T_PROJECT, i, 8), seed_hash(g, T_PROJECT, i, 9), fid);
        lb_str(&g->lb, "new_document", fid);
        lb_str(&g->lb, "new_document_name", k->name);
        fake_bytes(h, k->mime, size, &g->tmp);
        sqlite3_reset(g->ins_file);
        sqlite3_bind_int(g->ins_file, 1, table_id(g->env, T_PROJECT));
        sqlite3_bind_text(g->ins_file, 2, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(g->ins_file, 3, "new_document", -1, SQLITE_STATIC);
        sqlite3_bind_text(g->ins_file, 4, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(g->ins_file, 5, k->mime, -1, SQLITE_STATIC);
        sqlite3_bind_blob(g->ins_file, 6, g->tmp.data, (int)g->tmp.len, SQLITE_STATIC);
        if (sqlite3_step(g->ins_file) != SQLITE_DONE)
            return -EIO;
    }
    seed_common(g, t, i, ver);
    return seed_insert(g, T_PROJECT, id);
}

