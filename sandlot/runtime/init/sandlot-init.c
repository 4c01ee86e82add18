/*
 * sandlot-init: PID 1 of every sandlot sandbox.
 *
 * Usage: sandlot-init --listen ADDR:PORT --token-fd N [--ready-fd M]
 *        sandlot-init net-hook --veth NAME --host-address A.B.C.D/N --address A.B.C.D/N
 *                              [--ping-groups LOW-HIGH]
 *
 * The second form is a runc createRuntime hook that wires the sandbox's network; it has
 * nothing to do with being PID 1 and is described in its own section, "net-hook mode", below.
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
/* net-hook mode */
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

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

/* ============================================================== net-hook mode */
/*
 * sandlot-init net-hook --veth NAME --host-address A.B.C.D/N --address A.B.C.D/N
 *                      [--ping-groups LOW-HIGH]
 *
 * Why it exists
 * -------------
 * runc has to create each sandbox's network namespace itself, so that the namespace belongs
 * to the sandbox's user namespace: CRIU refuses to checkpoint a sandbox whose network
 * namespace belongs to another user namespace. So the veth cannot be prepared in advance; it
 * is wired from a runc createRuntime hook, which runc also runs on `runc restore`, when the
 * namespace is new again. The hook is on the critical path of every create and restore, so it
 * speaks rtnetlink itself, a dozen syscalls, where running `ip` several times costs ~8 ms. It
 * lives in this binary because that one is already built, static, for every host.
 *
 * What it does
 * ------------
 * runc runs it in the host's namespaces, as root, with the container's state JSON on stdin.
 *   1. Read the state (at most 64 KiB), take "pid", open /proc/PID/ns/net.
 *   2. Create the veth pair: NAME in the host's namespace, its peer "eth0" in the sandbox's.
 *   3. Host side: disable IPv6 on NAME, add the host address, set NAME up.
 *   4. setns() into the sandbox's namespace and, on a new rtnetlink socket (a socket stays in
 *      the namespace it was made in): lo up, disable IPv6 on eth0, add the address, eth0 up,
 *      default route via the host address.
 *   5. With --ping-groups, set net.ipv4.ping_group_range there: the groups that may open ICMP
 *      datagram sockets, which is how ping works without CAP_NET_RAW. LOW and HIGH are host
 *      gids (the kernel reads them in the writer's user namespace, the host's here). CRIU
 *      does not carry the range over a checkpoint, so every restore needs this step again.
 * IPv6 is disabled before a link comes up, so that it never gets a link-local address; after
 * setns(), /proc/sys/net shows the calling thread's new namespace, so the same paths serve
 * both sides. The first failure ends the hook with one line on stderr (the step and the errno
 * string, with the kernel's extended-ACK message when there is one) and exit 1, which makes
 * runc fail the create; a veth pair made by then is deleted again, so that a retry does not
 * meet it. Usage errors exit 2.
 */

#define NH_STATE_MAX (64 * 1024)
#define NH_MSG_MAX 1024
#define NH_PEER "eth0"

struct nh_cidr {
    const char *text;     /* as given, for messages */
    struct in_addr addr;
    unsigned prefix;
};

struct nh_args {
    const char *veth;
    struct nh_cidr host, sandbox;
    const char *ping_groups; /* "LOW HIGH", or NULL to leave the range alone */
};

typedef union {
    struct nlmsghdr h;
    char raw[NH_MSG_MAX];
} nh_msg;

static struct {
    int host_nl;         /* rtnetlink socket in the host's namespace, or -1 */
    const char *veth;    /* set once the pair exists: it is ours to delete on failure */
    char ext_ack[256];   /* the kernel's message about the last failed request */
} nh = {.host_nl = -1};

static void nh_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sandlot-init net-hook: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: sandlot-init net-hook --veth NAME --host-address A.B.C.D/N"
                    " --address A.B.C.D/N [--ping-groups LOW-HIGH]\n");
    exit(2);
}

/* -- netlink messages */

/* Append len bytes (zeros if data is NULL), padded to the netlink alignment. */
static void *nh_put(struct nlmsghdr *h, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(h->nlmsg_len);
    if (at + NLMSG_ALIGN(len) > NH_MSG_MAX)
        abort(); /* the messages below are of fixed, small sizes */
    char *p = (char *)h + at;
    memset(p, 0, NLMSG_ALIGN(len));
    if (data)
        memcpy(p, data, len);
    h->nlmsg_len = (uint32_t)(at + NLMSG_ALIGN(len));
    return p;
}

static struct nlmsghdr *nh_start(nh_msg *m, uint16_t type, uint16_t flags, const void *fam, size_t len)
{
    memset(&m->h, 0, sizeof m->h);
    m->h.nlmsg_len = NLMSG_HDRLEN;
    m->h.nlmsg_type = type;
    m->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    nh_put(&m->h, fam, len);
    return &m->h;
}

static struct rtattr *nh_attr(struct nlmsghdr *h, uint16_t type, const void *data, size_t len)
{
    struct rtattr *a = nh_put(h, NULL, RTA_LENGTH(0));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    nh_put(h, data, len);
    return a;
}

/* Close a nested attribute opened with nh_attr(h, type, NULL, 0). */
static void nh_nest_end(struct nlmsghdr *h, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((char *)h + h->nlmsg_len - (char *)nest);
}

/* Keep the kernel's extended-ACK message (NLMSGERR_ATTR_MSG), if the error carries one. */
static void nh_keep_ext_ack(const struct nlmsghdr *h)
{
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS) || !(h->nlmsg_flags & NLM_F_CAPPED))
        return;
    const char *p = (const char *)h + NLMSG_LENGTH(sizeof(struct nlmsgerr));
    const char *end = (const char *)h + h->nlmsg_len;
    while (end - p >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)p;
        if (a->nla_len < NLA_HDRLEN || a->nla_len > end - p)
            return;
        if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
            snprintf(nh.ext_ack, sizeof nh.ext_ack, "%.*s", (int)(a->nla_len - NLA_HDRLEN), p + NLA_HDRLEN);
            return;
        }
        p += NLA_ALIGN(a->nla_len);
    }
}

static int nh_socket(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    int one = 1;
    if (fd >= 0) {
        /* Short ACKs, with the kernel's reason for a failure. Both are optional. */
        setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
        setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    }
    return fd;
}

/* Send one request and wait for its ACK. 0, or the errno the kernel answered with. */
static int nh_talk(int fd, struct nlmsghdr *req)
{
    static uint32_t seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    req->nlmsg_seq = ++seq;
    nh.ext_ack[0] = 0;
    if (sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return errno;
    for (;;) {
        union { struct nlmsghdr h; char raw[8192]; } reply;
        ssize_t n = recv(fd, &reply, sizeof reply, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        int left = (int)n;
        for (struct nlmsghdr *h = &reply.h; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != req->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                return EBADMSG;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (e->error)
                nh_keep_ext_ack(h);
            return -e->error;
        }
    }
}

/* -- rtnetlink requests; each returns 0 or an errno */

static int nh_create_veth(int fd, const char *name, int netns_fd)
{
    nh_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    uint32_t ns = (uint32_t)netns_fd;
    struct nlmsghdr *h = nh_start(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    nh_attr(h, IFLA_IFNAME, name, strlen(name) + 1);
    struct rtattr *info = nh_attr(h, IFLA_LINKINFO, NULL, 0);
    nh_attr(h, IFLA_INFO_KIND, "veth", strlen("veth"));
    struct rtattr *data = nh_attr(h, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = nh_attr(h, VETH_INFO_PEER, &ifi, sizeof ifi);
    nh_attr(h, IFLA_IFNAME, NH_PEER, sizeof NH_PEER);
    nh_attr(h, IFLA_NET_NS_FD, &ns, sizeof ns);
    nh_nest_end(h, peer);
    nh_nest_end(h, data);
    nh_nest_end(h, info);
    return nh_talk(fd, h);
}

static int nh_delete_link(int fd, const char *name)
{
    nh_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    struct nlmsghdr *h = nh_start(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
    nh_attr(h, IFLA_IFNAME, name, strlen(name) + 1);
    return nh_talk(fd, h);
}

static int nh_set_up(int fd, unsigned index)
{
    nh_msg m;
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC, .ifi_index = (int)index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP,
    };
    return nh_talk(fd, nh_start(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi));
}

static int nh_add_address(int fd, unsigned index, const struct nh_cidr *c)
{
    nh_msg m;
    struct ifaddrmsg ifa = {
        .ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)c->prefix,
        .ifa_scope = RT_SCOPE_UNIVERSE, .ifa_index = index,
    };
    struct nlmsghdr *h = nh_start(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
    nh_attr(h, IFA_LOCAL, &c->addr, sizeof c->addr);
    nh_attr(h, IFA_ADDRESS, &c->addr, sizeof c->addr);
    return nh_talk(fd, h);
}

static int nh_add_default_route(int fd, unsigned index, struct in_addr gateway)
{
    nh_msg m;
    struct rtmsg rt = {
        .rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT,
        .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST,
    };
    uint32_t oif = index;
    struct nlmsghdr *h = nh_start(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
    nh_attr(h, RTA_GATEWAY, &gateway, sizeof gateway);
    nh_attr(h, RTA_OIF, &oif, sizeof oif);
    return nh_talk(fd, h);
}

/* -- steps */

/* One line on stderr, the veth pair deleted again if we made it, exit 1. err 0: no errno. */
static void nh_fail(int err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!err)
        fprintf(stderr, "sandlot-init net-hook: %s\n", what);
    else if (nh.ext_ack[0])
        fprintf(stderr, "sandlot-init net-hook: %s: %s (%s)\n", what, strerror(err), nh.ext_ack);
    else
        fprintf(stderr, "sandlot-init net-hook: %s: %s\n", what, strerror(err));
    if (nh.veth && nh.host_nl >= 0)
        nh_delete_link(nh.host_nl, nh.veth); /* best effort; the peer goes with it */
    exit(1);
}

static int nh_valid_ifname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    /* What the kernel refuses, and '%', which it would take for a name template. */
    for (; *s; s++)
        if (*s == '/' || *s == ':' || *s == '%' || *s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

static void nh_parse_cidr(const char *opt, const char *s, struct nh_cidr *c)
{
    const char *slash = strchr(s, '/');
    char ip[INET_ADDRSTRLEN];
    c->text = s;
    if (!slash || (size_t)(slash - s) >= sizeof ip)
        nh_usage("%s wants an IPv4 address with a prefix length (A.B.C.D/N), got '%s'", opt, s);
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = 0;
    const char *p = slash + 1;
    size_t digits = strspn(p, "0123456789");
    if (inet_pton(AF_INET, ip, &c->addr) != 1 || digits == 0 || digits > 2 || p[digits] != 0)
        nh_usage("%s wants an IPv4 address with a prefix length (A.B.C.D/N), got '%s'", opt, s);
    c->prefix = (unsigned)atoi(p);
    if (c->prefix < 1 || c->prefix > 30)
        nh_usage("%s: the prefix length must be 1 to 30 (a /30 or larger subnet), got '%s'", opt, s);
}

/* Both addresses in the same subnet, distinct, neither its network nor broadcast address. */
static void nh_check_subnet(const struct nh_args *a)
{
    uint32_t mask = a->host.prefix ? ~0u << (32 - a->host.prefix) : 0;
    uint32_t h = ntohl(a->host.addr.s_addr), s = ntohl(a->sandbox.addr.s_addr);
    if (a->host.prefix != a->sandbox.prefix || (h & mask) != (s & mask))
        nh_usage("--host-address %s and --address %s are not in the same subnet", a->host.text, a->sandbox.text);
    if (h == s)
        nh_usage("--host-address and --address are the same address, %s", a->host.text);
    uint32_t addrs[2] = {h, s};
    for (int i = 0; i < 2; i++)
        if ((addrs[i] & ~mask) == 0 || (addrs[i] & ~mask) == ~mask)
            nh_usage("%s is the network or broadcast address of its subnet", i ? a->sandbox.text : a->host.text);
}

static void nh_parse_args(int argc, char **argv, struct nh_args *a)
{
    const char *veth = NULL, *host = NULL, *sandbox = NULL, *ping = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char **slot = strcmp(argv[i], "--veth") == 0           ? &veth
                            : strcmp(argv[i], "--host-address") == 0 ? &host
                            : strcmp(argv[i], "--address") == 0      ? &sandbox
                            : strcmp(argv[i], "--ping-groups") == 0  ? &ping
                                                                     : NULL;
        if (!slot)
            nh_usage("unknown argument '%s'", argv[i]);
        if (i + 1 >= argc)
            nh_usage("%s wants a value", argv[i]);
        if (*slot)
            nh_usage("%s given twice", argv[i]);
        *slot = argv[i + 1];
    }
    if (!veth || !host || !sandbox)
        nh_usage("--veth, --host-address and --address are all required");
    if (!nh_valid_ifname(veth))
        nh_usage("--veth: not a valid interface name (1 to %d bytes, no '/', ':', '%%' or space): '%s'",
                 IFNAMSIZ - 1, veth);
    a->veth = veth;
    nh_parse_cidr("--host-address", host, &a->host);
    nh_parse_cidr("--address", sandbox, &a->sandbox);
    nh_check_subnet(a);
    a->ping_groups = NULL;
    if (ping) {
        static char range[32];
        unsigned low, high;
        int end = 0;
        if (sscanf(ping, "%10u-%10u%n", &low, &high, &end) != 2 || ping[end] || ping[0] < '0' || ping[0] > '9'
            || low > high)
            nh_usage("--ping-groups: want LOW-HIGH, two gids with LOW <= HIGH, not '%s'", ping);
        snprintf(range, sizeof range, "%u %u", low, high);
        a->ping_groups = range;
    }
}

/* Step 1: the container's pid from the state JSON runc writes on stdin. */
static pid_t nh_read_pid(void)
{
    static char state[NH_STATE_MAX + 1];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, state + len, sizeof state - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            nh_fail(errno, "reading the container state from stdin");
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > NH_STATE_MAX)
            nh_fail(0, "reading the container state from stdin: more than %d bytes", NH_STATE_MAX);
    }
    const char *end = state + len;
    for (const char *p = state; (p = memmem(p, (size_t)(end - p), "\"pid\"", 5)); p += 5) {
        const char *q = p + 5;
        while (q < end && strchr(" \t\r\n", *q) && *q)
            q++;
        if (q == end || *q != ':')
            continue;
        for (q++; q < end && strchr(" \t\r\n", *q) && *q; q++)
            ;
        long long pid = 0;
        const char *digits = q;
        for (; q < end && *q >= '0' && *q <= '9' && pid <= INT_MAX; q++)
            pid = pid * 10 + (*q - '0');
        if (q == digits)
            continue;
        if (pid < 1 || pid > INT_MAX || (q < end && *q >= '0' && *q <= '9'))
            nh_fail(0, "the container state on stdin has an impossible pid: %.*s", (int)(q - digits), digits);
        return (pid_t)pid;
    }
    nh_fail(0, "the container state on stdin has no \"pid\" (%zu bytes read)", len);
    return -1;
}

/* Step 1: the container's network namespace, which must not be ours. */
static int nh_open_netns(pid_t pid)
{
    char path[64];
    struct stat target, self;
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        nh_fail(errno, "opening the container's network namespace, %s", path);
    if (fstat(fd, &target) < 0 || stat("/proc/self/ns/net", &self) < 0)
        nh_fail(errno, "comparing %s with the host's network namespace", path);
    if (target.st_dev == self.st_dev && target.st_ino == self.st_ino)
        nh_fail(0, "process %d is in the host's network namespace; runc made none for it", (int)pid);
    return fd;
}

static void nh_write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        nh_fail(errno, "opening %s", path);
    ssize_t len = (ssize_t)strlen(value);
    if (write(fd, value, (size_t)len) != len)
        nh_fail(errno, "writing '%s' to %s", value, path);
    close(fd);
}

static void nh_disable_ipv6(const char *ifname)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    if (access(path, F_OK) < 0 && errno == ENOENT && access("/proc/sys/net/ipv6", F_OK) < 0)
        return; /* a kernel without IPv6: nothing to disable */
    nh_write_sysctl(path, "1");
}

/* Steps 3 and 4: IPv6 off, the address on, the link up. Returns the link's index. */
static unsigned nh_configure_link(int nl, const char *ifname, const struct nh_cidr *c)
{
    int err;
    nh_disable_ipv6(ifname);
    unsigned index = if_nametoindex(ifname);
    if (index == 0)
        nh_fail(errno, "looking up the index of %s", ifname);
    if ((err = nh_add_address(nl, index, c)))
        nh_fail(err, "adding the address %s to %s", c->text, ifname);
    if ((err = nh_set_up(nl, index)))
        nh_fail(err, "setting %s up", ifname);
    return index;
}

/* Steps 2 and 3, in the host's namespace. */
static void nh_host_side(const struct nh_args *a, int netns_fd)
{
    int err;
    nh.host_nl = nh_socket();
    if (nh.host_nl < 0)
        nh_fail(errno, "opening an rtnetlink socket in the host's namespace");
    if ((err = nh_create_veth(nh.host_nl, a->veth, netns_fd))) {
        if (err == EEXIST && !nh.ext_ack[0]) /* the kernel does not say which of the two */
            snprintf(nh.ext_ack, sizeof nh.ext_ack, "%s", if_nametoindex(a->veth)
                     ? "the host already has a link of that name"
                     : "the container's namespace already has an " NH_PEER);
        nh_fail(err, "creating the veth %s with its peer %s in the container's namespace", a->veth, NH_PEER);
    }
    nh.veth = a->veth;
    nh_configure_link(nh.host_nl, a->veth, &a->host);
}

/* Step 4, in the sandbox's namespace. */
static void nh_sandbox_side(const struct nh_args *a, int netns_fd, pid_t pid)
{
    int err;
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        nh_fail(errno, "entering the network namespace of process %d", (int)pid);
    int nl = nh_socket();
    if (nl < 0)
        nh_fail(errno, "opening an rtnetlink socket in the container's namespace");
    unsigned lo = if_nametoindex("lo");
    if (lo == 0)
        nh_fail(errno, "looking up the index of lo in the container's namespace");
    if ((err = nh_set_up(nl, lo)))
        nh_fail(err, "setting lo up in the container's namespace");
    unsigned eth = nh_configure_link(nl, NH_PEER, &a->sandbox);
    if ((err = nh_add_default_route(nl, eth, a->host.addr)))
        nh_fail(err, "adding the default route via %s on %s", inet_ntoa(a->host.addr), NH_PEER);
    close(nl);
    if (a->ping_groups)
        nh_write_sysctl("/proc/sys/net/ipv4/ping_group_range", a->ping_groups);
}

static int net_hook_main(int argc, char **argv)
{
    struct nh_args a;
    nh_parse_args(argc, argv, &a);
    pid_t pid = nh_read_pid();
    int netns_fd = nh_open_netns(pid);
    nh_host_side(&a, netns_fd);
    nh_sandbox_side(&a, netns_fd, pid);
    return 0;
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

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "net-hook") == 0)
        return net_hook_main(argc - 1, argv + 1);
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
