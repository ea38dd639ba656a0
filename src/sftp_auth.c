/* Logging in over SSH: public key, password, keyboard-interactive, in that
 * order, each only when the server offers it; a failure names what was tried. */
#include "sftp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------- authentication */

/* Answers the server's hidden prompts with the password, on the first round
 * only: a second round means the password was refused or another factor is
 * wanted. Echoed prompts (a user name, say) never get the password. */
static void kbd_respond(const char *name, int name_len, const char *instruction, int instruction_len,
                        int num_prompts, const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
                        LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)
{
    sftp_session *s = *abstract;
    for (int i = 0; i < num_prompts; i++) {
        bool give = s->kbd_rounds == 0 && !prompts[i].echo && s->kbd_password;
        size_t len = give ? s->kbd_password_len : 0;
        responses[i].text = malloc(len + 1); /* libssh2 frees it with free() */
        responses[i].length = 0;
        if (responses[i].text) {
            if (len)
                memcpy(responses[i].text, s->kbd_password, len);
            responses[i].text[len] = '\0';
            responses[i].length = (unsigned)len;
        }
    }
    if (num_prompts > 0)
        s->kbd_rounds++;
}

static bool offers(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list; (p = strstr(p, method)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static void add_tried(char *tried, size_t cap, const char *method)
{
    size_t used = strlen(tried);
    snprintf(tried + used, cap - used, "%s%s", used ? ", " : "", method);
}

int vt_sftp_authenticate(sftp_session *s, const auth_opts *a, double deadline, vt_err *e)
{
    unsigned ulen = (unsigned)strlen(s->user);
    char *list;
    SSH_DRIVE_PTR(s, deadline, list, libssh2_userauth_list(s->ssh, s->user, ulen));
    if (!list) {
        if (libssh2_userauth_authenticated(s->ssh))
            return 0; /* the server let us in with "none" */
        int rc = libssh2_session_last_errno(s->ssh);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            vt_err_set(e, "Timeout", "%s:%d did not answer the login of %s within %gs", s->host, s->port, s->user,
                       s->timeout);
        else
            vt_err_set(e, "ConnectionError", "login of %s at %s:%d failed: %s", s->user, s->host, s->port,
                       vt_sftp_message(s));
        return -1;
    }
    char offered[256];
    snprintf(offered, sizeof offered, "%s", list);

    char tried[96] = "";
    char note[400] = "";
    int rc;
    if (a->private_key && offers(offered, "publickey")) {
        add_tried(tried, sizeof tried, "publickey");
        if (access(a->private_key, R_OK) != 0) {
            snprintf(note, sizeof note, "; cannot read private key %.200s: %s", a->private_key, strerror(errno));
        } else {
            SSH_DRIVE(s, deadline, rc,
                      libssh2_userauth_publickey_fromfile_ex(s->ssh, s->user, ulen, NULL, a->private_key,
                                                             a->passphrase ? a->passphrase : ""));
            if (rc == 0)
                return 0;
            if (rc == LIBSSH2_ERROR_TIMEOUT)
                goto timeout;
            if (rc == LIBSSH2_ERROR_FILE)
                snprintf(note, sizeof note,
                         "; private key %.200s could not be loaded (wrong or missing passphrase, or unsupported format)",
                         a->private_key);
        }
    }
    if (a->password && offers(offered, "password")) {
        add_tried(tried, sizeof tried, "password");
        SSH_DRIVE(s, deadline, rc,
                  libssh2_userauth_password_ex(s->ssh, s->user, ulen, a->password, (unsigned)a->password_len,
                                               NULL));
        if (rc == 0)
            return 0;
        if (rc == LIBSSH2_ERROR_TIMEOUT)
            goto timeout;
        if (rc == LIBSSH2_ERROR_PASSWORD_EXPIRED)
            snprintf(note, sizeof note, "; the password has expired");
    }
    if (a->password && offers(offered, "keyboard-interactive")) {
        add_tried(tried, sizeof tried, "keyboard-interactive");
        s->kbd_password = a->password;
        s->kbd_password_len = a->password_len;
        s->kbd_rounds = 0;
        SSH_DRIVE(s, deadline, rc, libssh2_userauth_keyboard_interactive_ex(s->ssh, s->user, ulen, kbd_respond));
        s->kbd_password = NULL;
        s->kbd_password_len = 0;
        if (rc == 0)
            return 0;
        if (rc == LIBSSH2_ERROR_TIMEOUT)
            goto timeout;
    }
    if (!a->password && !a->private_key)
        snprintf(note, sizeof note, "; no password or private_key was given");
    vt_err_set(e, "AuthenticationFailed", "authentication failed for %s@%s:%d (tried: %s; server offers: %s)%s",
               s->user, s->host, s->port, tried[0] ? tried : "nothing", offered, note);
    return -1;
timeout:
    vt_err_set(e, "Timeout", "%s:%d did not finish the login of %s within %gs", s->host, s->port, s->user,
               s->timeout);
    return -1;
}

