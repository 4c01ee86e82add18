/*
 * sandlot-init: PID 1 of every sandlot sandbox.
 *
 * Usage: sandlot-init --listen ADDR:PORT --token-fd N [--ready-fd M]
 *
 * The binary has a second form, `sandlot-init net-hook ...`, a runc createRuntime hook that
 * wires the sandbox's network; it has nothing to do with being PID 1 and lives in nethook.c.
 * main.c picks the form from the first argument; this file is the PID 1 program whole (the
 * fuzz target fuzz/init_frames.c includes it as it is).
 *
 * It is one file of ~1,500 lines on purpose: every function is static, so that the compiler
 * sees the whole program and nothing else can reach its state, and the fuzz target reaches
 * the static frame parser by including this file.
 *
 * Why it exists
 * -------------
 * A sandbox's processes must keep their stdio inside the sandbox's own process tree: CRIU
 * (pause, resume, fork) cannot dump a pipe or a PTY that leads to the host. So the processes'
 * pipes and PTYs end here, in the sandbox's PID 1, and the host daemon reaches them over TCP.
 * Before a checkpoint the daemon closes its TCP connections; after the restore it connects
 * again and attaches to the processes, which never noticed. As PID 1 it also reaps zombies.
 *
 * Design
 * ------
 * One thread, one poll() loop, every fd non-blocking; SIGCHLD, SIGTERM and SIGINT arrive
 * through a signalfd. Spawning is the only blocking step: the parent waits on a CLOEXEC pipe
 * until the child has exec'd (EOF) or reported why it could not (errno), so a program that
 * never ran never gets a STARTED. Output is relayed to every connection attached to the
 * process; when every one of them has more than 1 MiB queued, init stops reading that
 * process's output (the process then blocks on its full pipe); with none attached, output is
 * read and dropped, so nobody's absence ever blocks a process. After reaping a process, init
 * drains what is left in its pipes, sends EXIT and forgets it; grandchildren that still hold
 * the pipes do not delay the EXIT.
 *
 * Startup: read the token from --token-fd, block the signals, bind and listen, put /dev/null
 * on fds 0-2 (stdio from outside the sandbox must not survive a checkpoint), then write "1"
 * to --ready-fd. Errors before that go to the original stderr, where the daemon can see them.
 *
 * Protocol (TCP, big-endian)
 * --------------------------
 * Frame: u32 length (of type + payload, at most 1 MiB + 16), u8 type, payload.
 * Strings: u32 length + bytes. String lists: u32 count + strings.
 *
 * client -> init
 *   0x01 HELLO       token                      first frame; OK, or the connection closes
 *   0x02 SPAWN       u8 flags (1 pty, 2 keep stdin), u16 rows, u16 cols, str user,
 *                    str cwd (empty: home), str tag, list argv, list env ("K=V")
 *                    -> STARTED, and the connection is the process's stream; or ERROR
 *   0x03 ATTACH      u32 pid                    -> STARTED (now a stream) or ERROR ESRCH
 *   0x04 LIST                                   -> 0x84 LIST
 *   0x05 SIGNAL      u32 pid, u32 signum        -> OK or ERROR
 *   0x06 STDIN       u32 pid, data              -> OK or ERROR
 *   0x07 CLOSE_STDIN u32 pid                    -> OK or ERROR
 *   0x08 RESIZE      u32 pid, u16 rows, u16 cols -> OK or ERROR
 *   0x09 PING                                   -> OK
 *   on a stream, without replies:
 *   0x10 STDIN data, 0x11 CLOSE_STDIN, 0x12 SIGNAL u32 signum, 0x13 RESIZE u16 rows u16 cols
 *
 * init -> client
 *   0x81 OK, 0x82 STARTED u32 pid, 0x8F ERROR u32 errno + str message,
 *   0x84 LIST u32 count + per process (u32 pid, u8 pty, str tag, str cwd, list argv),
 *   on a stream: 0x90 STDOUT data, 0x91 STDERR data,
 *   0x92 EXIT i32 exit_code (-1 if killed), i32 signal (0 if it exited), u32 max_rss_kb (the
 *        peak resident memory of the process and the descendants it waited for); then init
 *        closes.
 *
 * On a PTY, CLOSE_STDIN sends the terminal's EOF character (^D) instead of closing anything.
 * A malformed frame, an unknown type or a frame that is too long closes the connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sandlot-init.h"

#define MAX_FRAME (1024 * 1024 + 16)
#define MAX_HELLO_FRAME 256        /* before HELLO nobody may make init buffer much */
#define MAX_TOKEN 128
#define MAX_PROCS 4096
#define MAX_CONNS 1024
#define MAX_GROUPS 256
#define HIGH_WATER (1024 * 1024)   /* queued bytes past which a reader counts as slow */
#define STREAM_CAP (16 * 1024 * 1024) /* a stream this far behind the others is dropped */
#define READ_CHUNK 65536
#define HELLO_TIMEOUT_MS 10000
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum frame_type {
    T_HELLO = 0x01, T_SPAWN = 0x02, T_ATTACH = 0x03, T_LIST = 0x04, T_SIGNAL = 0x05,
    T_STDIN = 0x06, T_CLOSE_STDIN = 0x07, T_RESIZE = 0x08, T_PING = 0x09,
    T_S_STDIN = 0x10, T_S_CLOSE_STDIN = 0x11, T_S_SIGNAL = 0x12, T_S_RESIZE = 0x13,
    T_OK = 0x81, T_STARTED = 0x82, T_LIST_REPLY = 0x84, T_ERROR = 0x8F,
    T_STDOUT = 0x90, T_STDERR = 0x91, T_EXIT = 0x92,
};

/* ---------------------------------------------------------------- byte queues */

struct buf {
    uint8_t *data;
    size_t start, end, cap; /* pending bytes are data[start..end) */
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        /* Nothing sensible is left to do for a PID 1 without memory. */
        abort();
    }
    return p;
}

static size_t buf_len(const struct buf *b) { return b->end - b->start; }
static uint8_t *buf_head(const struct buf *b) { return b->data + b->start; }

static void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Make room for n more bytes at the end, moving pending bytes to the front first. */
static void buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->end >= n)
        return;
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, buf_len(b));
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->end < n)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return; /* an empty STDIN frame to an unused buffer: no memcpy to NULL (UB) */
    buf_reserve(b, n);
    memcpy(b->data + b->end, p, n);
    b->end += n;
}

static void buf_u8(struct buf *b, uint8_t v) { buf_append(b, &v, 1); }
static void buf_u32(struct buf *b, uint32_t v) { v = htonl(v); buf_append(b, &v, 4); }

static void buf_str(struct buf *b, const char *s)
{
    buf_u32(b, (uint32_t)strlen(s));
    buf_append(b, s, strlen(s));
}

/* Drop n bytes from the front; give a big, now empty buffer back (RSS after a flood). */
static void buf_consume(struct buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end) {
        b->start = b->end = 0;
        if (b->cap > 256 * 1024)
            buf_free(b);
    }
}

/* ------------------------------------------------------------- payload reader */

struct rd {
    const uint8_t *p;
    size_t n;
    int bad; /* set on the first read past the end or invalid string */
};

static int rd_need(struct rd *r, size_t n)
{
    if (r->bad || r->n < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static uint8_t rd_u8(struct rd *r)
{
    if (!rd_need(r, 1))
        return 0;
    uint8_t v = r->p[0];
    r->p++, r->n--;
    return v;
}

static uint16_t rd_u16(struct rd *r)
{
    if (!rd_need(r, 2))
        return 0;
    uint16_t v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2, r->n -= 2;
    return v;
}

static uint32_t rd_u32(struct rd *r)
{
    if (!rd_need(r, 4))
        return 0;
    uint32_t v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4, r->n -= 4;
    return v;
}

/* A string as a fresh NUL-terminated copy; one with a NUL inside is malformed. */
static char *rd_str(struct rd *r)
{
    uint32_t len = rd_u32(r);
    if (!rd_need(r, len) || memchr(r->p, 0, len)) {
        r->bad = 1;
        return NULL;
    }
    char *s = xrealloc(NULL, len + 1);
    memcpy(s, r->p, len);
    s[len] = 0;
    r->p += len, r->n -= len;
    return s;
}

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

/* A string list as a NULL-terminated array. */
static char **rd_list(struct rd *r)
{
    uint32_t count = rd_u32(r);
    if (!rd_need(r, (size_t)count * 4)) /* each string takes at least 4 bytes */
        return NULL;
    char **v = xrealloc(NULL, ((size_t)count + 1) * sizeof *v);
    for (uint32_t i = 0; i <= count; i++)
        v[i] = NULL;
    for (uint32_t i = 0; i < count && !r->bad; i++)
        v[i] = rd_str(r);
    if (r->bad) {
        strv_free(v);
        return NULL;
    }
    return v;
}

/* --------------------------------------------------------------------- state */

enum conn_state { C_HELLO, C_CONTROL, C_STREAM };

struct proc;

struct conn {
    int fd;
    enum conn_state state;
    struct buf in, out;
    struct proc *proc;  /* C_STREAM: the process; NULL once it has exited */
    int eof;            /* the peer has closed its side */
    int closing;        /* close once `out` is flushed; read nothing more */
    int dead;           /* close at the end of this loop round */
    int write_blocked;  /* the socket said EAGAIN; wait for POLLOUT */
    long long deadline; /* C_HELLO: monotonic ms by which HELLO must have come */
};

struct proc {
    pid_t pid;
    int pty;           /* master fd, or -1 */
    int out[2];        /* stdout, stderr read ends (pty: out[0] is the master); -1 at EOF */
    int in;            /* stdin write end (pty: the master); -1 once closed */
    int close_in;      /* close stdin once inq is written */
    struct buf inq;    /* stdin not yet written */
    char *tag, *cwd;
    char **argv;
    struct conn **streams;
    int nstreams;
};

static struct conn *conns[MAX_CONNS];
static int nconns;
static struct proc *procs[MAX_PROCS];
static int nprocs;

static uint8_t token[MAX_TOKEN];
static size_t token_len;
static int listen_fd = -1, sig_fd = -1, devnull_fd = -1;
static struct rlimit orig_nofile;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *what)
{
    fprintf(stderr, "sandlot-init: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* --------------------------------------------------------------- connections */

/* Write what is queued until the socket is full. */
static void conn_flush(struct conn *c)
{
    while (buf_len(&c->out) && !c->dead) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            c->write_blocked = 1;
            return;
        } else {
            c->dead = 1;
        }
    }
    if (c->closing && !buf_len(&c->out))
        c->dead = 1;
}

static void conn_frame(struct conn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    buf_u32(&c->out, (uint32_t)(1 + alen + blen));
    buf_u8(&c->out, type);
    if (alen)
        buf_append(&c->out, a, alen);
    if (blen)
        buf_append(&c->out, b, blen);
}

static void send_ok(struct conn *c) { conn_frame(c, T_OK, NULL, 0, NULL, 0); }

static void send_u32(struct conn *c, uint8_t type, uint32_t v)
{
    v = htonl(v);
    conn_frame(c, type, &v, 4, NULL, 0);
}

static void send_error(struct conn *c, int err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct buf b = {0};
    buf_u32(&b, (uint32_t)err);
    buf_str(&b, msg);
    conn_frame(c, T_ERROR, buf_head(&b), buf_len(&b), NULL, 0);
    buf_free(&b);
}

static void stream_detach(struct conn *c)
{
    struct proc *p = c->proc;
    if (!p)
        return;
    for (int i = 0; i < p->nstreams; i++) {
        if (p->streams[i] == c) {
            p->streams[i] = p->streams[--p->nstreams];
            break;
        }
    }
    c->proc = NULL;
}

static void stream_attach(struct conn *c, struct proc *p)
{
    p->streams = xrealloc(p->streams, (size_t)(p->nstreams + 1) * sizeof *p->streams);
    p->streams[p->nstreams++] = c;
    c->proc = p;
    c->state = C_STREAM;
}

static void accept_conns(void)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a connection that died in the backlog */
        if (nconns >= MAX_CONNS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = xrealloc(NULL, sizeof *c);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->state = C_HELLO;
        c->deadline = now_ms() + HELLO_TIMEOUT_MS;
        conns[nconns++] = c;
    }
}

/* Close the connections marked dead, and the authenticated-never ones past their deadline. */
static void sweep_conns(void)
{
    long long now = now_ms();
    for (int i = nconns - 1; i >= 0; i--) {
        struct conn *c = conns[i];
        if (c->state == C_HELLO && now >= c->deadline)
            c->dead = 1;
        if (!c->dead)
            continue;
        stream_detach(c);
        close(c->fd);
        buf_free(&c->in);
        buf_free(&c->out);
        free(c);
        conns[i] = conns[--nconns];
    }
}

/* ----------------------------------------------------------------- processes */

static struct proc *proc_find(uint32_t pid)
{
    for (int i = 0; i < nprocs; i++)
        if ((uint32_t)procs[i]->pid == pid)
            return procs[i];
    return NULL;
}

/* Signal the process group (every spawned process leads its own session), else the process. */
static int proc_kill(struct proc *p, int sig)
{
    if (kill(-p->pid, sig) == 0 || kill(p->pid, sig) == 0)
        return 0;
    return -errno;
}

static int proc_resize(struct proc *p, uint16_t rows, uint16_t cols)
{
    if (p->pty < 0)
        return -ENOTTY;
    struct winsize ws = {.ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80};
    return ioctl(p->pty, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}

static void proc_stdin_close_now(struct proc *p)
{
    buf_free(&p->inq);
    p->close_in = 0;
    if (p->pty < 0)
        close_fd(&p->in);
    else
        p->in = -1; /* the master stays open for output; it is closed with the process */
}

/* Write queued stdin until the pipe is full; a reader that went away drops the rest. */
static void proc_flush_stdin(struct proc *p)
{
    while (p->in >= 0 && buf_len(&p->inq)) {
        ssize_t n = write(p->in, buf_head(&p->inq), buf_len(&p->inq));
        if (n > 0)
            buf_consume(&p->inq, (size_t)n);
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && errno == EAGAIN)
            return;
        else
            proc_stdin_close_now(p);
    }
    if (p->in >= 0 && p->close_in)
        proc_stdin_close_now(p);
}

static int proc_stdin(struct proc *p, const void *data, size_t n)
{
    if (p->in < 0 || p->close_in)
        return -EPIPE;
    buf_append(&p->inq, data, n);
    proc_flush_stdin(p);
    return 0;
}

static void proc_close_stdin(struct proc *p)
{
    if (p->pty >= 0) {
        struct termios t;
        uint8_t eof = tcgetattr(p->pty, &t) == 0 ? t.c_cc[VEOF] : 4;
        proc_stdin(p, &eof, 1);
        return;
    }
    if (p->in >= 0) {
        p->close_in = 1;
        proc_flush_stdin(p);
    }
}

/* Output is held back only when every attached stream is a slow reader. */
static int proc_paused(const struct proc *p)
{
    for (int i = 0; i < p->nstreams; i++)
        if (buf_len(&p->streams[i]->out) < HIGH_WATER)
            return 0;
    return p->nstreams > 0;
}

static void proc_emit(struct proc *p, uint8_t type, const void *data, size_t n)
{
    for (int i = p->nstreams - 1; i >= 0; i--) {
        struct conn *c = p->streams[i];
        if (buf_len(&c->out) > STREAM_CAP) {
            c->dead = 1;
            stream_detach(c);
            continue;
        }
        conn_frame(c, type, data, n, NULL, 0);
    }
}

/* One read of stdout (which 0) or stderr (1); returns the byte count, 0 at EOF or EAGAIN. */
static ssize_t proc_read(struct proc *p, int which)
{
    static uint8_t chunk[READ_CHUNK];
    if (p->out[which] < 0)
        return 0;
    ssize_t n = read(p->out[which], chunk, sizeof chunk);
    if (n > 0) {
        proc_emit(p, which ? T_STDERR : T_STDOUT, chunk, (size_t)n);
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    /* EOF, or EIO from a PTY master whose slave is closed everywhere. */
    if (p->pty >= 0)
        p->out[which] = -1;
    else
        close_fd(&p->out[which]);
    return 0;
}

static void proc_free(struct proc *p)
{
    for (int i = 0; i < nprocs; i++) {
        if (procs[i] == p) {
            procs[i] = procs[--nprocs];
            break;
        }
    }
    if (p->pty >= 0) {
        close(p->pty);
    } else {
        close_fd(&p->out[0]);
        close_fd(&p->out[1]);
        close_fd(&p->in);
    }
    buf_free(&p->inq);
    free(p->tag);
    free(p->cwd);
    strv_free(p->argv);
    free(p->streams);
    free(p);
}

/* The process was reaped: deliver what it left in its pipes, then EXIT, then forget it. */
static void proc_exited(struct proc *p, int status, const struct rusage *ru)
{
    for (int which = 0; which < 2; which++) {
        /* Bounded: a grandchild may go on filling the pipe forever. */
        for (int i = 0; i < 64 && proc_read(p, which) > 0; i++)
            ;
    }
    int32_t code = -1, sig = 0;
    if (WIFEXITED(status))
        code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        sig = WTERMSIG(status);
    uint32_t payload[3] = {htonl((uint32_t)code), htonl((uint32_t)sig), htonl((uint32_t)ru->ru_maxrss)};
    while (p->nstreams > 0) {
        struct conn *c = p->streams[0];
        conn_frame(c, T_EXIT, payload, sizeof payload, NULL, 0);
        c->closing = 1;
        stream_detach(c);
    }
    proc_free(p);
}

static void reap_children(void)
{
    int status;
    pid_t pid;
    struct rusage ru;
    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
        struct proc *p = proc_find((uint32_t)pid);
        if (p)
            proc_exited(p, status, &ru);
        /* Anything else was an orphan that ended up with us; its status means nothing. */
    }
}

/* ------------------------------------------------------------------ spawning */

struct user {
    uid_t uid;
    gid_t gid;
    char *name, *home, *shell;
    gid_t groups[MAX_GROUPS];
    int ngroups;
};

static void user_free(struct user *u)
{
    free(u->name);
    free(u->home);
    free(u->shell);
}

static int parse_id(const char *s, unsigned long *out)
{
    char *end;
    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return (*end || errno || *out > 0xfffffffeUL) ? -1 : 0;
}

/*
 * Look up a user by name or uid in the sandbox's /etc/passwd and /etc/group, parsed here
 * because getpwnam() in a static glibc needs NSS modules that cannot be loaded.
 */
static int user_lookup(const char *spec, struct user *u)
{
    unsigned long want_uid = 0;
    int numeric = parse_id(spec, &want_uid) == 0;
    int found = 0;
    char *line = NULL;
    size_t cap = 0;
    memset(u, 0, sizeof *u);
    FILE *f = fopen("/etc/passwd", "re");
    while (f && !found && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        char *rest = line, *fld[7];
        int n = 0;
        while (n < 7 && rest)
            fld[n++] = strsep(&rest, ":");
        unsigned long uid, gid;
        if (n < 7 || parse_id(fld[2], &uid) || parse_id(fld[3], &gid))
            continue;
        if (numeric ? uid != want_uid : strcmp(fld[0], spec) != 0)
            continue;
        found = 1;
        u->uid = (uid_t)uid, u->gid = (gid_t)gid;
        u->name = strdup(fld[0]);
        u->home = strdup(*fld[5] ? fld[5] : "/");
        u->shell = strdup(*fld[6] ? fld[6] : "/bin/sh");
    }
    if (f)
        fclose(f);
    if (!found && !numeric) {
        free(line);
        return -1;
    }
    if (!found) { /* a uid nobody named: run with gid = uid in / */
        u->uid = u->gid = (uid_t)want_uid;
        u->name = strdup(spec);
        u->home = strdup("/");
        u->shell = strdup("/bin/sh");
    }
    u->groups[u->ngroups++] = u->gid;
    f = fopen("/etc/group", "re");
    while (f && getline(&line, &cap, f) > 0 && u->ngroups < MAX_GROUPS) {
        line[strcspn(line, "\n")] = 0;
        char *rest = line, *fld[4];
        int n = 0;
        while (n < 4 && rest)
            fld[n++] = strsep(&rest, ":");
        unsigned long gid;
        if (n < 4 || parse_id(fld[2], &gid) || (gid_t)gid == u->gid)
            continue;
        for (char *m; (m = strsep(&fld[3], ",")) != NULL;) {
            if (strcmp(m, u->name) == 0) {
                u->groups[u->ngroups++] = (gid_t)gid;
                break;
            }
        }
    }
    if (f)
        fclose(f);
    free(line);
    return 0;
}

struct env {
    char **v;
    int n;
};

/* Set "K=V", replacing an earlier value of K. */
static void env_put(struct env *e, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return;
    size_t klen = (size_t)(eq - kv) + 1;
    for (int i = 0; i < e->n; i++) {
        if (strncmp(e->v[i], kv, klen) == 0) {
            free(e->v[i]);
            e->v[i] = strdup(kv);
            return;
        }
    }
    e->v = xrealloc(e->v, (size_t)(e->n + 2) * sizeof *e->v);
    e->v[e->n++] = strdup(kv);
    e->v[e->n] = NULL;
}

static void env_set(struct env *e, const char *k, const char *v)
{
    char *kv;
    if (asprintf(&kv, "%s=%s", k, v) < 0)
        abort();
    env_put(e, kv);
    free(kv);
}

static int env_has(const struct env *e, const char *k)
{
    size_t klen = strlen(k);
    for (int i = 0; i < e->n; i++)
        if (strncmp(e->v[i], k, klen) == 0 && e->v[i][klen] == '=')
            return 1;
    return 0;
}

/* init's own environment (the sandbox's), the user's identity, then the request on top. */
static struct env env_build(const struct user *u, char **req_env, int pty)
{
    extern char **environ;
    struct env e = {0};
    e.v = xrealloc(NULL, sizeof *e.v);
    e.v[0] = NULL;
    for (char **p = environ; *p; p++)
        if (strncmp(*p, "SANDLOT_INIT_", 13) != 0)
            env_put(&e, *p);
    env_set(&e, "HOME", u->home);
    env_set(&e, "USER", u->name);
    env_set(&e, "LOGNAME", u->name);
    env_set(&e, "SHELL", u->shell);
    for (char **p = req_env; p && *p; p++)
        env_put(&e, *p);
    if (pty && !env_has(&e, "TERM"))
        env_set(&e, "TERM", "xterm-256color");
    if (!env_has(&e, "PATH"))
        env_set(&e, "PATH", DEFAULT_PATH);
    return e;
}

enum stage { STAGE_SETUP = 1, STAGE_USER, STAGE_CWD, STAGE_EXEC };

struct spawn_req {
    uint8_t flags;
    uint16_t rows, cols;
    char *user, *cwd, *tag;
    char **argv, **env;
};

/* What the child needs, all prepared before fork so that the child only makes syscalls. */
struct launch {
    struct user user;
    char *cwd;
    int cwd_is_home;
    char **argv, **envp;
    int stdin_fd, out_fd, err_fd, pty_slave, report_fd;
};

static void spawn_req_free(struct spawn_req *r)
{
    free(r->user);
    free(r->cwd);
    free(r->tag);
    strv_free(r->argv);
    strv_free(r->env);
}

static void child_fail(int report_fd, int stage)
{
    int32_t report[2] = {errno, stage};
    ssize_t ignored = write(report_fd, report, sizeof report);
    (void)ignored;
    _exit(127);
}

static void child_exec(const struct launch *l)
{
    extern char **environ;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &dfl, NULL); /* SIGPIPE was ignored; ignoring survives exec */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setrlimit(RLIMIT_NOFILE, &orig_nofile);

    if (setsid() < 0)
        child_fail(l->report_fd, STAGE_SETUP);
    if (l->pty_slave >= 0) {
        if (ioctl(l->pty_slave, TIOCSCTTY, 0) < 0)
            child_fail(l->report_fd, STAGE_SETUP);
        for (int fd = 0; fd < 3; fd++)
            if (dup2(l->pty_slave, fd) < 0)
                child_fail(l->report_fd, STAGE_SETUP);
    } else if (dup2(l->stdin_fd, 0) < 0 || dup2(l->out_fd, 1) < 0 || dup2(l->err_fd, 2) < 0) {
        child_fail(l->report_fd, STAGE_SETUP);
    }
    /* Everything else closes at exec; the report pipe lives until then. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = 3; fd < 65536; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }

    const struct user *u = &l->user;
    if (geteuid() == 0 || u->uid != geteuid() || u->gid != getegid()) {
        if (setgroups((size_t)u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
            child_fail(l->report_fd, STAGE_USER);
    }
    if (chdir(l->cwd) < 0 && !(l->cwd_is_home && chdir("/") == 0))
        child_fail(l->report_fd, STAGE_CWD);
    environ = l->envp; /* execvp searches the PATH the program will see */
    execvp(l->argv[0], l->argv);
    child_fail(l->report_fd, STAGE_EXEC);
}

/* A PTY pair: the master non-blocking for init, the slave for the child. */
static int open_pty(int *master, int *slave, uint16_t rows, uint16_t cols)
{
    int unlock = 0;
    *master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (*master < 0)
        return -1;
    if (ioctl(*master, TIOCSPTLCK, &unlock) < 0)
        goto fail;
    *slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) {
        char name[64];
        if (ptsname_r(*master, name, sizeof name) != 0)
            goto fail;
        *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (*slave < 0)
            goto fail;
    }
    struct winsize ws = {.ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80};
    ioctl(*master, TIOCSWINSZ, &ws);
    return 0;
fail:
    close_fd(master);
    return -1;
}

static const char *stage_what(int stage)
{
    switch (stage) {
    case STAGE_USER: return "switching to user";
    case STAGE_CWD: return "changing to directory";
    case STAGE_EXEC: return "executing";
    default: return "setting up";
    }
}

/*
 * Fork and exec the request. Returns the new process, or NULL with *err and msg set; in that
 * case the child (if any) has been reaped and nothing of it is left.
 */
static struct proc *proc_spawn(struct spawn_req *req, int *err, char *msg, size_t msglen)
{
    struct launch l = {.stdin_fd = -1, .out_fd = -1, .err_fd = -1, .pty_slave = -1, .report_fd = -1};
    int pty = req->flags & 1, keep_stdin = req->flags & 2;
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    int report[2] = {-1, -1}, master = -1;
    struct proc *p = NULL;

    if (!*req->user || user_lookup(req->user, &l.user) < 0) {
        *err = EINVAL;
        snprintf(msg, msglen, "no user '%s' in /etc/passwd", req->user);
        return NULL;
    }
    l.cwd = *req->cwd ? req->cwd : l.user.home;
    l.cwd_is_home = !*req->cwd;
    l.argv = req->argv;
    struct env env = env_build(&l.user, req->env, pty);
    l.envp = env.v;

    int ok = pipe2(report, O_CLOEXEC) == 0;
    if (ok && pty) {
        ok = open_pty(&master, &l.pty_slave, req->rows, req->cols) == 0;
    } else if (ok) {
        ok = pipe2(out_pipe, O_CLOEXEC) == 0 && pipe2(err_pipe, O_CLOEXEC) == 0 &&
             (!keep_stdin || pipe2(in_pipe, O_CLOEXEC) == 0);
        l.stdin_fd = keep_stdin ? in_pipe[0] : devnull_fd;
        l.out_fd = out_pipe[1];
        l.err_fd = err_pipe[1];
    }
    pid_t pid = ok ? fork() : -1;
    if (pid == 0) {
        l.report_fd = report[1];
        child_exec(&l);
    }
    if (pid < 0) {
        *err = errno;
        snprintf(msg, msglen, "cannot start %s: %s", req->argv[0], strerror(errno));
        goto out;
    }
    close_fd(&report[1]);
    int32_t rep[2];
    ssize_t n;
    do
        n = read(report[0], rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    if (n == sizeof rep) { /* the child failed before exec, and has exited */
        waitpid(pid, NULL, 0);
        *err = rep[0];
        snprintf(msg, msglen, "%s %s: %s", stage_what(rep[1]),
                 rep[1] == STAGE_CWD ? l.cwd : rep[1] == STAGE_USER ? req->user : req->argv[0],
                 strerror(rep[0]));
        goto out;
    }

    p = xrealloc(NULL, sizeof *p);
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->pty = master;
    p->out[0] = pty ? master : out_pipe[0];
    p->out[1] = pty ? -1 : err_pipe[0];
    p->in = pty ? master : in_pipe[1];
    fcntl(p->out[0], F_SETFL, O_NONBLOCK);
    if (p->out[1] >= 0)
        fcntl(p->out[1], F_SETFL, O_NONBLOCK);
    if (p->in >= 0)
        fcntl(p->in, F_SETFL, O_NONBLOCK);
    p->tag = req->tag, req->tag = NULL;
    p->cwd = strdup(l.cwd);
    p->argv = req->argv, req->argv = NULL;
    master = out_pipe[0] = err_pipe[0] = in_pipe[1] = -1; /* now owned by p */
    procs[nprocs++] = p;
out:
    close_fd(&report[0]);
    close_fd(&report[1]);
    close_fd(&master);
    close_fd(&l.pty_slave);
    for (int i = 0; i < 2; i++) {
        close_fd(&in_pipe[i]);
        close_fd(&out_pipe[i]);
        close_fd(&err_pipe[i]);
    }
    strv_free(env.v);
    user_free(&l.user);
    return p;
}

/* ------------------------------------------------------------------- frames */

static int token_matches(const uint8_t *got, size_t n)
{
    uint8_t diff = n != token_len;
    for (size_t i = 0; i < token_len; i++)
        diff |= token[i] ^ (i < n ? got[i] : 0);
    return diff == 0;
}

static void on_spawn(struct conn *c, struct rd *r)
{
    struct spawn_req req = {0};
    req.flags = rd_u8(r);
    req.rows = rd_u16(r);
    req.cols = rd_u16(r);
    req.user = rd_str(r);
    req.cwd = rd_str(r);
    req.tag = rd_str(r);
    req.argv = rd_list(r);
    req.env = rd_list(r);
    if (r->bad || r->n || !req.argv || !req.argv[0] || !*req.argv[0]) {
        c->dead = 1;
    } else if (nprocs >= MAX_PROCS) {
        send_error(c, EAGAIN, "too many processes (%d)", MAX_PROCS);
    } else {
        char msg[1024];
        int err = 0;
        struct proc *p = proc_spawn(&req, &err, msg, sizeof msg);
        if (p) {
            send_u32(c, T_STARTED, (uint32_t)p->pid);
            stream_attach(c, p);
        } else {
            send_error(c, err, "%s", msg);
        }
    }
    spawn_req_free(&req);
}

static void on_list(struct conn *c)
{
    struct buf b = {0};
    buf_u32(&b, (uint32_t)nprocs);
    for (int i = 0; i < nprocs; i++) {
        struct proc *p = procs[i];
        int argc = 0;
        while (p->argv[argc])
            argc++;
        buf_u32(&b, (uint32_t)p->pid);
        buf_u8(&b, p->pty >= 0);
        buf_str(&b, p->tag);
        buf_str(&b, p->cwd);
        buf_u32(&b, (uint32_t)argc);
        for (int j = 0; j < argc; j++)
            buf_str(&b, p->argv[j]);
    }
    conn_frame(c, T_LIST_REPLY, buf_head(&b), buf_len(&b), NULL, 0);
    buf_free(&b);
}

/* Control requests that name a process by pid: SIGNAL, STDIN, CLOSE_STDIN, RESIZE, ATTACH. */
static void on_proc_request(struct conn *c, uint8_t type, struct rd *r)
{
    uint32_t pid = rd_u32(r);
    if (r->bad) {
        c->dead = 1;
        return;
    }
    struct proc *p = proc_find(pid);
    if (!p) {
        send_error(c, ESRCH, "no process with pid %u", pid);
        return;
    }
    int rc = 0;
    switch (type) {
    case T_ATTACH:
        send_u32(c, T_STARTED, pid);
        stream_attach(c, p);
        return;
    case T_SIGNAL: {
        uint32_t sig = rd_u32(r);
        rc = r->bad ? 0 : sig >= (uint32_t)NSIG ? -EINVAL : proc_kill(p, (int)sig);
        break;
    }
    case T_STDIN:
        rc = proc_stdin(p, r->p, r->n);
        r->n = 0;
        break;
    case T_CLOSE_STDIN:
        proc_close_stdin(p);
        break;
    case T_RESIZE: {
        uint16_t rows = rd_u16(r), cols = rd_u16(r);
        rc = r->bad ? 0 : proc_resize(p, rows, cols);
        break;
    }
    }
    if (r->bad || r->n)
        c->dead = 1;
    else if (rc < 0)
        send_error(c, -rc, "pid %u: %s", pid, strerror(-rc));
    else
        send_ok(c);
}

static void on_stream_frame(struct conn *c, uint8_t type, struct rd *r)
{
    struct proc *p = c->proc;
    uint32_t sig;
    uint16_t rows, cols;
    switch (type) {
    case T_S_STDIN:
        proc_stdin(p, r->p, r->n); /* no replies on a stream: a closed stdin drops it */
        r->n = 0;
        break;
    case T_S_CLOSE_STDIN:
        proc_close_stdin(p);
        break;
    case T_S_SIGNAL:
        sig = rd_u32(r);
        if (!r->bad && !r->n && sig < (uint32_t)NSIG)
            proc_kill(p, (int)sig);
        break;
    case T_S_RESIZE:
        rows = rd_u16(r), cols = rd_u16(r);
        if (!r->bad && !r->n)
            proc_resize(p, rows, cols);
        break;
    default:
        r->bad = 1;
    }
    if (r->bad || r->n)
        c->dead = 1;
}

static void on_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
    struct rd r = {payload, len, 0};
    if (c->state == C_HELLO) {
        if (type == T_HELLO && token_matches(payload, len)) {
            c->state = C_CONTROL;
            send_ok(c);
        } else {
            c->dead = 1;
        }
    } else if (c->state == C_STREAM) {
        on_stream_frame(c, type, &r);
    } else if (type == T_SPAWN) {
        on_spawn(c, &r);
    } else if (type == T_LIST || type == T_PING) {
        if (len)
            c->dead = 1;
        else if (type == T_LIST)
            on_list(c);
        else
            send_ok(c);
    } else if (type == T_ATTACH || (type >= T_SIGNAL && type <= T_RESIZE)) {
        on_proc_request(c, type, &r);
    } else {
        c->dead = 1;
    }
}

/* The process a frame would write stdin to, if that frame is a stdin write. */
static struct proc *stdin_target(const struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
    if (c->state == C_STREAM && type == T_S_STDIN)
        return c->proc;
    if (c->state == C_CONTROL && type == T_STDIN && len >= 4) {
        struct rd r = {payload, len, 0};
        return proc_find(rd_u32(&r));
    }
    return NULL;
}

/*
 * Handle the complete frames in c->in, stopping (without reading further) at one that would
 * overfill a process's stdin queue, or while a control reply queue is full.
 */
static int conn_process(struct conn *c)
{
    while (!c->dead && !c->closing && buf_len(&c->in) >= 4) {
        const uint8_t *h = buf_head(&c->in);
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        uint32_t max = c->state == C_HELLO ? MAX_HELLO_FRAME : MAX_FRAME;
        if (len < 1 || len > max) {
            c->dead = 1;
            break;
        }
        if (buf_len(&c->in) < 4 + (size_t)len)
            break;
        struct proc *target = stdin_target(c, h[4], h + 5, len - 1);
        if (target && buf_len(&target->inq) >= HIGH_WATER)
            return 1; /* blocked */
        if (c->state == C_CONTROL && buf_len(&c->out) >= HIGH_WATER)
            return 1;
        on_frame(c, h[4], h + 5, len - 1);
        buf_consume(&c->in, 4 + (size_t)len);
    }
    if (c->eof && !c->dead && !c->closing) {
        /* The peer is gone and nothing more can be done for it: flush and close. */
        stream_detach(c);
        c->closing = 1;
    }
    return 0;
}

static void conn_read(struct conn *c)
{
    buf_reserve(&c->in, READ_CHUNK);
    ssize_t n = recv(c->fd, c->in.data + c->in.end, READ_CHUNK, 0);
    if (n > 0)
        c->in.end += (size_t)n;
    else if (n == 0)
        c->eof = 1;
    else if (errno != EAGAIN && errno != EINTR)
        c->dead = 1;
    conn_process(c);
}

/* ---------------------------------------------------------------- main loop */

enum slot_kind { S_LISTEN, S_SIGNAL, S_CONN, S_OUT, S_IN };

struct slot {
    enum slot_kind kind;
    void *obj;
    int which;
};

static struct pollfd pfds[2 + MAX_CONNS + 3 * MAX_PROCS];
static struct slot slots[2 + MAX_CONNS + 3 * MAX_PROCS];

static int add_pollfd(int n, int fd, short events, enum slot_kind kind, void *obj, int which)
{
    pfds[n] = (struct pollfd){.fd = fd, .events = events};
    slots[n] = (struct slot){kind, obj, which};
    return n + 1;
}

static int build_pollset(void)
{
    int n = 0;
    n = add_pollfd(n, listen_fd, POLLIN, S_LISTEN, NULL, 0);
    n = add_pollfd(n, sig_fd, POLLIN, S_SIGNAL, NULL, 0);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = conns[i];
        short ev = 0;
        /* Frames held back last round (a full stdin or reply queue) may go through now. */
        if (!c->eof && !c->closing && !c->dead && !conn_process(c))
            ev |= POLLIN;
        if (buf_len(&c->out))
            ev |= POLLOUT;
        n = add_pollfd(n, c->fd, ev, S_CONN, c, 0);
    }
    for (int i = 0; i < nprocs; i++) {
        struct proc *p = procs[i];
        int paused = proc_paused(p);
        for (int w = 0; w < 2; w++)
            if (p->out[w] >= 0 && !paused)
                n = add_pollfd(n, p->out[w], POLLIN, S_OUT, p, w);
        if (p->in >= 0 && buf_len(&p->inq))
            n = add_pollfd(n, p->in, POLLOUT, S_IN, p, 0);
    }
    return n;
}

/* Until the next HELLO deadline; no wait at all when a connection is ready to be closed. */
static int poll_timeout(void)
{
    long long first = -1, now = now_ms();
    for (int i = 0; i < nconns; i++) {
        struct conn *c = conns[i];
        if (c->dead || (c->closing && !buf_len(&c->out)))
            return 0;
        if (c->state == C_HELLO && (first < 0 || c->deadline < first))
            first = c->deadline;
    }
    if (first < 0)
        return -1;
    return first <= now ? 0 : (int)(first - now);
}

static void shutdown_and_exit(void);

/* Returns 1 when SIGTERM or SIGINT came. */
static int read_signals(void)
{
    struct signalfd_siginfo si;
    int stop = 0;
    while (read(sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            stop = 1;
    return stop;
}

static void run(void)
{
    for (;;) {
        int n = build_pollset();
        if (poll(pfds, (nfds_t)n, poll_timeout()) < 0 && errno != EINTR)
            die("poll");
        int signalled = 0;
        for (int i = 0; i < n; i++) {
            short rev = pfds[i].revents;
            struct slot *s = &slots[i];
            if (!rev)
                continue;
            switch (s->kind) {
            case S_LISTEN: accept_conns(); break;
            case S_SIGNAL: signalled = 1; break;
            case S_CONN: {
                struct conn *c = s->obj;
                if (pfds[i].events & POLLIN && rev & (POLLIN | POLLHUP | POLLERR))
                    conn_read(c);
                else if (rev & (POLLHUP | POLLERR))
                    c->dead = 1;
                if (rev & POLLOUT)
                    c->write_blocked = 0;
                break;
            }
            case S_OUT: proc_read(s->obj, s->which); break;
            case S_IN: proc_flush_stdin(s->obj); break;
            }
        }
        /* Reap after reading output, so that a process's last words come before its EXIT. */
        if (signalled) {
            int stop = read_signals();
            reap_children();
            if (stop)
                shutdown_and_exit();
        }
        for (int i = 0; i < nconns; i++)
            if (!conns[i]->write_blocked)
                conn_flush(conns[i]);
        sweep_conns();
    }
}

/* ----------------------------------------------------------------- shutdown */

/* Reap until no child is left or the time is up; returns 1 when none is left. */
static int reap_all_until(long long deadline)
{
    for (;;) {
        pid_t pid;
        while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
            ;
        if (pid < 0 && errno == ECHILD)
            return 1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

/* SIGKILL every direct child, including orphans reparented to us as subreaper. */
static void kill_children(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char path[64], stat[512];
        unsigned long pid;
        if (parse_id(de->d_name, &pid))
            continue;
        snprintf(path, sizeof path, "/proc/%lu/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = 0;
        char *rp = strrchr(stat, ')');
        int ppid;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == getpid())
            kill((pid_t)pid, SIGKILL);
    }
    if (d)
        closedir(d);
}

static void shutdown_and_exit(void)
{
    if (getpid() == 1) {
        kill(-1, SIGTERM);
        if (!reap_all_until(now_ms() + 2000)) {
            kill(-1, SIGKILL);
            reap_all_until(now_ms() + 2000);
        }
    } else {
        /* Never kill(-1) here: off PID 1 that would be every process of the host. */
        for (int i = 0; i < nprocs; i++)
            kill(-procs[i]->pid, SIGKILL);
        long long deadline = now_ms() + 2000;
        do
            kill_children();
        while (!reap_all_until(now_ms() + 20) && now_ms() < deadline);
    }
    exit(0);
}

/* ------------------------------------------------------------------ startup */

static void read_token(int fd)
{
    for (;;) {
        ssize_t n = read(fd, token + token_len, sizeof token - token_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("reading the token");
        if (n == 0)
            break;
        token_len += (size_t)n;
        if (token_len == sizeof token) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                fprintf(stderr, "sandlot-init: the token is longer than %d bytes\n", MAX_TOKEN);
                exit(2);
            }
            break;
        }
    }
    close(fd);
    if (token_len == 0) {
        fprintf(stderr, "sandlot-init: the token is empty\n");
        exit(2);
    }
}

static void listen_on(const char *spec)
{
    struct sockaddr_storage ss = {0};
    socklen_t sslen;
    char host[64];
    const char *colon = strrchr(spec, ':');
    unsigned long port;
    if (!colon || (size_t)(colon - spec) >= sizeof host || parse_id(colon + 1, &port) || port > 65535) {
        fprintf(stderr, "sandlot-init: --listen wants ADDR:PORT, got %s\n", spec);
        exit(2);
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        sslen = sizeof *v6;
        if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) != 1)
            goto bad;
    } else {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        sslen = sizeof *v4;
        if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
            goto bad;
    }
    listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("socket");
    if (bind(listen_fd, (struct sockaddr *)&ss, sslen) < 0)
        die(spec);
    if (listen(listen_fd, 128) < 0)
        die("listen");
    return;
bad:
    fprintf(stderr, "sandlot-init: not an IP address: %s\n", host);
    exit(2);
}

static void usage(void)
{
    fprintf(stderr, "usage: sandlot-init --listen ADDR:PORT --token-fd N [--ready-fd M]\n"
                    "       sandlot-init net-hook --veth NAME --host-address A.B.C.D/N --address A.B.C.D/N\n");
    exit(2);
}

int init_main(int argc, char **argv)
{
    const char *listen_spec = NULL;
    unsigned long token_fd = ULONG_MAX, ready_fd = ULONG_MAX;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--listen") == 0)
            listen_spec = argv[++i];
        else if (strcmp(argv[i], "--token-fd") == 0 && parse_id(argv[i + 1], &token_fd) == 0)
            i++;
        else if (strcmp(argv[i], "--ready-fd") == 0 && parse_id(argv[i + 1], &ready_fd) == 0)
            i++;
        else
            usage();
    }
    if (!listen_spec || token_fd > INT_MAX)
        usage();
    read_token((int)token_fd);

    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die("sigprocmask");
    sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0)
        die("signalfd");
    /* Orphans come to us even when we are not PID 1 (tests, or a runtime with its own init). */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* Room for every connection and process fd; children get the original limit back. */
    getrlimit(RLIMIT_NOFILE, &orig_nofile);
    struct rlimit raised = orig_nofile;
    raised.rlim_cur = raised.rlim_max;
    setrlimit(RLIMIT_NOFILE, &raised);

    listen_on(listen_spec);

    devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull_fd < 0)
        die("/dev/null");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(devnull_fd, fd) < 0)
            die("dup2");
    if (ready_fd <= INT_MAX) {
        ssize_t ignored = write((int)ready_fd, "1", 1);
        (void)ignored;
        close((int)ready_fd);
    }
    run();
    return 0;
}

