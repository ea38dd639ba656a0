/* SFTP, shared by sftp.c (sessions: vt.sftp, connecting, sess:open),
 * sftp_source.c (remote files as upload sources), known_hosts.c (the host key
 * check) and sftp_auth.c (logging in). Private to these files. */
#ifndef VT_SFTP_H
#define VT_SFTP_H

#include "vt.h"

#include <libssh2.h>
#include <libssh2_sftp.h>


typedef struct sftp_source sftp_source;

typedef struct sftp_session {
    LIBSSH2_SESSION *ssh; /* NULL once closed */
    int fd;               /* -1 once closed */
    double timeout;       /* seconds, for every wait */
    bool insecure;        /* the host key was not checked */
    bool handshaken;      /* a disconnect message makes sense */
    bool broken;          /* the socket was shut down: no more waiting */
    sftp_source *sources; /* open sources, closed with the session */
    /* Used by the keyboard-interactive callback during vt.sftp() only. */
    const char *kbd_password;
    size_t kbd_password_len;
    int kbd_rounds;
    char user[256];
    char host[256];
    int port;
} sftp_session;

struct sftp_source {
    vt_source base;       /* first member: the engine sees a vt_source */
    sftp_session *sess;   /* NULL once closed */
    LIBSSH2_SFTP *sftp;   /* this source's own SFTP channel */
    LIBSSH2_SFTP_HANDLE *handle;
    int64_t pos;          /* bytes handed out since the start */
    bool pending;         /* the last libssh2_sftp_read said EAGAIN: resume it first */
    bool restart;         /* a rewind is due once the pending read is drained */
    sftp_source *prev, *next;
};

/* sftp.c: waiting on the session */

/* What libssh2 is blocked on (VT_WANT_READ, VT_WANT_WRITE; reading when it does not say). */
int vt_sftp_session_events(sftp_session *s);
/* Waits until the session's socket is ready for what libssh2 is blocked on. */
int vt_sftp_session_wait(sftp_session *s, double deadline);
/* Shuts the socket down so that whatever libssh2 still waits for fails at once. */
void vt_sftp_session_break(sftp_session *s);
/* When teardown stops waiting for a polite goodbye. */
double vt_sftp_close_deadline(sftp_session *s);
/* libssh2's own description of the last error. */
const char *vt_sftp_message(sftp_session *s);
/* Whether a libssh2 error code means the connection itself failed. */
bool vt_sftp_transport_error(int rc);


/* Runs a libssh2 call returning int until it stops saying EAGAIN; rc becomes
 * LIBSSH2_ERROR_TIMEOUT when the deadline passes first. */
#define SSH_DRIVE(s, deadline, rc, call)                                  \
    while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN)                       \
        if (!vt_sftp_session_wait((s), (deadline))) {                             \
            (rc) = LIBSSH2_ERROR_TIMEOUT;                                 \
            break;                                                        \
        }

/* The same for calls returning a pointer (NULL with EAGAIN as last error);
 * on timeout ptr stays NULL and the last error stays EAGAIN. */
#define SSH_DRIVE_PTR(s, deadline, ptr, call)                             \
    while (!((ptr) = (call)) &&                                           \
           libssh2_session_last_errno((s)->ssh) == LIBSSH2_ERROR_EAGAIN)  \
        if (!vt_sftp_session_wait((s), (deadline)))                               \
            break;

/* Teardown calls: past the deadline the socket is shut down and the call
 * gets one more second to fail and free what it holds. */
#define SSH_FINISH(s, deadline, call)                                     \
    do {                                                                  \
        double dl_ = (deadline);                                          \
        while ((call) == LIBSSH2_ERROR_EAGAIN) {                          \
            if (vt_sftp_session_wait((s), dl_))                                   \
                continue;                                                 \
            if ((s)->broken)                                              \
                break;                                                    \
            vt_sftp_session_break(s);                                             \
            dl_ = vt_monotonic() + 1.0;                                   \
        }                                                                 \
    } while (0)

/* sftp_source.c */
/* sess:open(path) -> source | nil, err (the session is argument 1). */
int vt_sftp_session_open(lua_State *L, sftp_session *s);

/* known_hosts.c */
/* The name OpenSSH files a host under: "host" on port 22, else "[host]:port". */
void vt_known_hosts_name(sftp_session *s, char *out, size_t cap);
/* Reads known_hosts (@revoked lines into revoked); false when the file is absent. */
bool vt_known_hosts_load(LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked, const char *path);
/* Asks the server first for the host key types on file for name. */
void vt_known_hosts_prefer(sftp_session *s, LIBSSH2_KNOWNHOSTS *kh, const char *name);
/* Checks the server's host key. Returns 0, or -1 with e filled. */
int vt_known_hosts_check(sftp_session *s, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked,
                         bool have_file, const char *path, const char *name, vt_err *e);

/* sftp_auth.c */
typedef struct auth_opts {
    const char *password;
    size_t password_len;
    const char *private_key; /* expanded path */
    const char *passphrase;
} auth_opts;

/* Logs in with what a offers and the server accepts. Returns 0, or -1 with e filled. */
int vt_sftp_authenticate(sftp_session *s, const auth_opts *a, double deadline, vt_err *e);

#endif
