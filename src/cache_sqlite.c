/* The cache on SQLite: one file per user (or the path given), shared by every
 * process of the host, in WAL mode so that readers never wait for a writer.
 * Every call is local and bounded: a lock held elsewhere for longer than
 * BUSY_MS makes the call fail (the look-up goes on without the cache).
 *
 * Tables: vt_entries (one row per stored answer: its frame, when it was stored,
 * when it expires, when it was last used, its size), vt_keys (every key and
 * alias -> its entry), vt_leases (in-flight markers: key, owner, pid, expiry)
 * and vt_totals (the bytes of all entries, kept by triggers). Least recently
 * used entries go first when the total passes cache_max_bytes; `used` is
 * written at most once a second per entry, and never waits for a lock, so that
 * a hit stays a read.
 *
 * A marker whose owner process is gone (kill(pid, 0)) counts as free: SQLite
 * serves the processes of one host. */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#define BUSY_MS 200         /* a call waits this long at most for another process's lock: a few
                               writes of other processes, also on a loaded host */
#define SETUP_BUSY_MS 1000  /* opening (once, or after a failure) may wait longer */
#define REOPEN_PAUSE 1.0    /* seconds between two attempts to open after a failure */
#define TOUCH_EVERY 1.0     /* seconds: how stale `used` may get */

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA foreign_keys=ON;"
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS vt_entries(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    " negative INTEGER NOT NULL, stored REAL NOT NULL, expires REAL NOT NULL, used REAL NOT NULL,"
    " size INTEGER NOT NULL, frame BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS vt_entries_used ON vt_entries(used);"
    "CREATE INDEX IF NOT EXISTS vt_entries_expires ON vt_entries(expires);"
    "CREATE TABLE IF NOT EXISTS vt_keys(key TEXT PRIMARY KEY,"
    " entry INTEGER NOT NULL REFERENCES vt_entries(id) ON DELETE CASCADE) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS vt_keys_entry ON vt_keys(entry);"
    "CREATE TABLE IF NOT EXISTS vt_leases(key TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL,"
    " expires REAL NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS vt_totals(id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO vt_totals VALUES (1, 0);"
    "CREATE TRIGGER IF NOT EXISTS vt_entries_added AFTER INSERT ON vt_entries"
    " BEGIN UPDATE vt_totals SET bytes = bytes + NEW.size WHERE id = 1; END;"
    "CREATE TRIGGER IF NOT EXISTS vt_entries_removed AFTER DELETE ON vt_entries"
    " BEGIN UPDATE vt_totals SET bytes = bytes - OLD.size WHERE id = 1; END;"
    "COMMIT;";

enum {
    S_FIND, S_TOUCH, S_LEASE_GET, S_LEASE_PUT, S_LEASE_REFRESH, S_LEASE_DEL, S_KEY_ENTRY, S_DEL_NAME,
    S_INSERT, S_KEY_PUT, S_DEL_ORPHAN, S_DEL_EXPIRED, S_TOTAL, S_EVICT, S_RECOUNT, S_DROP, S_COUNT
};

static const char *const statements[S_COUNT] = {
    [S_FIND] = "SELECT e.name, e.negative, e.stored, e.used, e.frame, e.id FROM vt_keys k"
               " JOIN vt_entries e ON e.id = k.entry WHERE k.key = ?1 AND e.expires > ?2",
    [S_TOUCH] = "UPDATE vt_entries SET used = ?2 WHERE id = ?1",
    [S_LEASE_GET] = "SELECT owner, pid, expires FROM vt_leases WHERE key = ?1",
    [S_LEASE_PUT] = "INSERT OR REPLACE INTO vt_leases(key, owner, pid, expires) VALUES (?1, ?2, ?3, ?4)",
    [S_LEASE_REFRESH] = "UPDATE vt_leases SET expires = ?3 WHERE key = ?1 AND owner = ?2",
    [S_LEASE_DEL] = "DELETE FROM vt_leases WHERE key = ?1 AND owner = ?2",
    [S_KEY_ENTRY] = "SELECT entry FROM vt_keys WHERE key = ?1",
    [S_DEL_NAME] = "DELETE FROM vt_entries WHERE name = ?1",
    [S_INSERT] = "INSERT INTO vt_entries(name, negative, stored, expires, used, size, frame)"
                 " VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6)",
    [S_KEY_PUT] = "INSERT OR REPLACE INTO vt_keys(key, entry) VALUES (?1, ?2)",
    [S_DEL_ORPHAN] = "DELETE FROM vt_entries WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM vt_keys WHERE entry = ?1)",
    [S_DEL_EXPIRED] = "DELETE FROM vt_entries WHERE id IN (SELECT id FROM vt_entries WHERE expires <= ?1 LIMIT 32)",
    [S_TOTAL] = "SELECT bytes FROM vt_totals WHERE id = 1",
    [S_EVICT] = "DELETE FROM vt_entries WHERE id = (SELECT id FROM vt_entries ORDER BY used LIMIT 1)",
    [S_RECOUNT] = "UPDATE vt_totals SET bytes = (SELECT coalesce(sum(size), 0) FROM vt_entries) WHERE id = 1",
    [S_DROP] = "DELETE FROM vt_entries WHERE id = (SELECT entry FROM vt_keys WHERE key = ?1)",
};

typedef struct sqlite_cache {
    char *path;
    int64_t max_bytes;
    sqlite3 *db;                 /* NULL until opened, and after a failure that needs a new one */
    sqlite3_stmt *st[S_COUNT];
    double reopen_at;            /* monotonic */
} sqlite_cache;

/* ---------------------------------------------------------------- set-up */

static void close_db(sqlite_cache *s)
{
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
    if (s->db)
        sqlite3_close_v2(s->db);
    s->db = NULL;
}

/* The file, created private to the user, then the connection and the schema. */
static int open_db(sqlite_cache *s)
{
    if (s->db)
        return 0;
    double mono = vt_monotonic();
    if (mono < s->reopen_at)
        return -1;
    s->reopen_at = mono + REOPEN_PAUSE;
    if (vt_make_parents(s->path) < 0)
        return -1;
    int fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    close(fd);
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, SETUP_BUSY_MS);
    if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK)
            goto fail;
    sqlite3_busy_timeout(s->db, BUSY_MS);
    return 0;
fail:
    if (s->db)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    close_db(s);
    return -1;
}

/* A failure: a database that is gone, damaged or not ours is opened again later;
 * a lock held elsewhere (SQLITE_BUSY) is only this call's failure. */
static void failed(sqlite_cache *s, vt_cache *c)
{
    if (c)
        vt_cache_counters(c)->errors++;
    if (!s->db)
        return;
    int rc = sqlite3_errcode(s->db) & 0xff;
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
        close_db(s);
}

void *vt_cache_sqlite_new(const char *path, int64_t max_bytes)
{
    sqlite_cache *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return NULL;
    }
    s->max_bytes = max_bytes;
    open_db(s); /* now rather than on the first look-up; a failure is tried again then */
    return s;
}

static void sqlite_free(void *be)
{
    sqlite_cache *s = be;
    close_db(s);
    free(s->path);
    free(s);
}

/* --------------------------------------------------------------- helpers */

static sqlite3_stmt *stmt(sqlite_cache *s, int which)
{
    sqlite3_stmt *st = s->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* Runs a statement that returns no row; 0 or -1. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int exec(sqlite_cache *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static bool process_alive(sqlite3_int64 pid)
{
    return pid == (sqlite3_int64)getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Looks for a fresh entry of key: 1 when S_FIND stands on it (answer_row ends
 * it), 0 when there is none, -1 on failure. */
static int find(sqlite_cache *s, const char *key, double now, double max_age, double max_age_negative)
{
    sqlite3_stmt *st = stmt(s, S_FIND);
    bind_text(st, 1, key);
    sqlite3_bind_double(st, 2, now);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && now - sqlite3_column_double(st, 2) <= (sqlite3_column_int(st, 1) ? max_age_negative : max_age))
        return 1;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static void sqlite_drop(void *be, vt_cache *c, const char *key);

/* Answers j with the entry S_FIND stands on (the cache checks its frame, straight
 * from SQLite's row: no copy), then drops it when corrupt (after the read is over:
 * a failing drop closes the database), else marks it used, at most once a second
 * and never waiting for a lock: with a writer elsewhere it waits for the next hit. */
static void answer_row(sqlite_cache *s, vt_cache *c, vt_job *j, double now)
{
    sqlite3_stmt *st = s->st[S_FIND];
    sqlite3_int64 id = sqlite3_column_int64(st, 5);
    double used = sqlite3_column_double(st, 3);
    const void *frame = sqlite3_column_blob(st, 4);
    size_t len = (size_t)sqlite3_column_bytes(st, 4);
    bool corrupt = vt_cache_answer(c, j, VT_FETCH_HIT, frame, len, (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    if (corrupt)
        sqlite_drop(s, c, j->cache.key); /* the key asked for names the entry found */
    else if (now - used > TOUCH_EVERY) {
        sqlite3_busy_timeout(s->db, 0);
        st = stmt(s, S_TOUCH);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_double(st, 2, now);
        run(st);
        sqlite3_busy_timeout(s->db, BUSY_MS);
    }
}

/* ------------------------------------------------------------ operations */

static void sqlite_fetch(void *be, vt_cache *c, vt_job *j, bool want_entry, double max_age, double max_age_negative,
                         const char *token)
{
    sqlite_cache *s = be;
    double now = vt_now();
    if (open_db(s) < 0)
        goto fail;
    int found = want_entry ? find(s, j->cache.key, now, max_age, max_age_negative) : 0;
    if (found > 0) {
        answer_row(s, c, j, now);
        return;
    }
    if (found == 0 && !token) {
        vt_cache_answer(c, j, VT_FETCH_FREE, NULL, 0, NULL);
        return;
    }
    if (found < 0 || exec(s, "BEGIN IMMEDIATE") < 0)
        goto fail;
    /* again under the write lock: an answer stored since the read above, and the marker */
    found = want_entry ? find(s, j->cache.key, now, max_age, max_age_negative) : 0;
    if (found > 0) {
        answer_row(s, c, j, now);
        if (s->db) /* a failed drop closed it, the transaction rolled back */
            exec(s, "COMMIT");
        return;
    }
    if (found < 0)
        goto fail;
    sqlite3_stmt *st = stmt(s, S_LEASE_GET);
    bind_text(st, 1, j->cache.key);
    int rc = sqlite3_step(st);
    bool busy = rc == SQLITE_ROW && sqlite3_column_double(st, 2) > now &&
                strcmp((const char *)sqlite3_column_text(st, 0), token) != 0 &&
                process_alive(sqlite3_column_int64(st, 1));
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        goto fail;
    if (!busy) {
        st = stmt(s, S_LEASE_PUT);
        bind_text(st, 1, j->cache.key);
        bind_text(st, 2, token);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)getpid());
        sqlite3_bind_double(st, 4, now + VT_LEASE_TTL);
        if (run(st) < 0)
            goto fail;
    }
    if (exec(s, "COMMIT") < 0)
        goto fail;
    vt_cache_answer(c, j, busy ? VT_FETCH_BUSY : VT_FETCH_LEASED, NULL, 0, NULL);
    return;
fail:
    failed(s, NULL); /* the engine counts the error of a fetch */
    vt_cache_answer(c, j, VT_FETCH_ERROR, NULL, 0, NULL);
}

/* Deletes the entries of ids that no key names any more. */
static int drop_orphans(sqlite_cache *s, const sqlite3_int64 *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = stmt(s, S_DEL_ORPHAN);
        sqlite3_bind_int64(st, 1, ids[i]);
        if (run(st) < 0)
            return -1;
    }
    return 0;
}

/* Expired entries go, then the least recently used ones while the total is over the
 * cap. With none left the total was wrong (the file was edited): it is counted again. */
static int make_room(sqlite_cache *s, double now)
{
    sqlite3_stmt *st = stmt(s, S_DEL_EXPIRED);
    sqlite3_bind_double(st, 1, now);
    if (run(st) < 0)
        return -1;
    for (;;) {
        st = stmt(s, S_TOTAL);
        if (sqlite3_step(st) != SQLITE_ROW) {
            sqlite3_reset(st);
            return -1;
        }
        sqlite3_int64 total = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (total <= s->max_bytes)
            return 0;
        if (run(stmt(s, S_EVICT)) < 0)
            return -1;
        if (sqlite3_changes(s->db) == 0)
            return run(stmt(s, S_RECOUNT));
    }
}

static bool sqlite_store(void *be, vt_cache *c, const char *key, const char *const *aliases, size_t n_aliases,
                         const char *frame, size_t len, bool negative, double ttl, const char *token)
{
    sqlite_cache *s = be;
    double now = vt_now();
    if ((int64_t)len > s->max_bytes / 4)
        return false; /* would push out a quarter of the cache at once */
    if (open_db(s) < 0 || exec(s, "BEGIN IMMEDIATE") < 0)
        goto fail;
    const char *keys[1 + 4];
    size_t n_keys = 0;
    keys[n_keys++] = key;
    for (size_t i = 0; i < n_aliases && n_keys < sizeof keys / sizeof *keys; i++)
        keys[n_keys++] = aliases[i];
    sqlite3_int64 old[1 + 4];
    size_t n_old = 0;
    for (size_t i = 0; i < n_keys; i++) {
        sqlite3_stmt *st = stmt(s, S_KEY_ENTRY);
        bind_text(st, 1, keys[i]);
        if (sqlite3_step(st) == SQLITE_ROW)
            old[n_old++] = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    sqlite3_stmt *st = stmt(s, S_DEL_NAME);
    bind_text(st, 1, key);
    if (run(st) < 0)
        goto fail;
    st = stmt(s, S_INSERT);
    bind_text(st, 1, key);
    sqlite3_bind_int(st, 2, negative);
    sqlite3_bind_double(st, 3, now);
    sqlite3_bind_double(st, 4, now + ttl);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)len);
    sqlite3_bind_blob(st, 6, frame, (int)len, SQLITE_STATIC);
    if (run(st) < 0)
        goto fail;
    sqlite3_int64 id = sqlite3_last_insert_rowid(s->db);
    for (size_t i = 0; i < n_keys; i++) {
        st = stmt(s, S_KEY_PUT);
        bind_text(st, 1, keys[i]);
        sqlite3_bind_int64(st, 2, id);
        if (run(st) < 0)
            goto fail;
    }
    if (drop_orphans(s, old, n_old) < 0)
        goto fail;
    if (token) {
        st = stmt(s, S_LEASE_DEL);
        bind_text(st, 1, key);
        bind_text(st, 2, token);
        if (run(st) < 0)
            goto fail;
    }
    if (make_room(s, now) < 0 || exec(s, "COMMIT") < 0)
        goto fail;
    vt_cache_counters(c)->stores++;
    return true;
fail:
    failed(s, c);
    return false;
}

/* Runs one statement on (key, token[, expiry]) as its own transaction. */
static void marker_update(sqlite_cache *s, vt_cache *c, int which, const char *key, const char *token)
{
    if (open_db(s) < 0) {
        failed(s, c);
        return;
    }
    sqlite3_stmt *st = stmt(s, which);
    bind_text(st, 1, key);
    bind_text(st, 2, token);
    if (which == S_LEASE_REFRESH)
        sqlite3_bind_double(st, 3, vt_now() + VT_LEASE_TTL);
    if (run(st) < 0)
        failed(s, c);
}

static void sqlite_refresh(void *be, vt_cache *c, const char *key, const char *token)
{
    marker_update(be, c, S_LEASE_REFRESH, key, token);
}

static void sqlite_release(void *be, vt_cache *c, const char *key, const char *token)
{
    marker_update(be, c, S_LEASE_DEL, key, token);
}

static void sqlite_drop(void *be, vt_cache *c, const char *key)
{
    sqlite_cache *s = be;
    if (open_db(s) < 0) {
        failed(s, c);
        return;
    }
    sqlite3_stmt *st = stmt(s, S_DROP);
    bind_text(st, 1, key);
    if (run(st) < 0)
        failed(s, c);
}

const vt_cache_backend vt_cache_sqlite = {
    "sqlite", sqlite_fetch, sqlite_store, sqlite_refresh, sqlite_release, sqlite_drop, sqlite_free,
};
